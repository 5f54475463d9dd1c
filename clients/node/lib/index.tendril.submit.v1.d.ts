export * from "./tendril/submit/v1/submit";
