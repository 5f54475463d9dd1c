export * as v1 from "./index.tendril.tensor.v1";
