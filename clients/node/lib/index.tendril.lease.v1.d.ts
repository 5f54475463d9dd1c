export * from "./tendril/lease/v1/lease";
