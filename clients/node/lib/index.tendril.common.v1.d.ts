export * from "./tendril/common/v1/common";
