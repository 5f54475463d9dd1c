export * from "./tendril/gateway/v1/gateway";
