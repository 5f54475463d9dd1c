export * as v1 from "./index.tendril.common.v1";
