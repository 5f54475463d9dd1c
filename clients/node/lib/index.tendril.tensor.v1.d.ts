export * from "./tendril/tensor/v1/tensor";
