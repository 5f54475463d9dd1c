export * as v1 from "./index.tendril.data.v1";
