export * from "./tendril/paramserver/v1/paramserver";
