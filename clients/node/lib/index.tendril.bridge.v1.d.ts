export * from "./tendril/bridge/v1/bridge";
