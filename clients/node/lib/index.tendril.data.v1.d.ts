export * from "./tendril/data/v1/data";
