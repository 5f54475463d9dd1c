export * as v1 from "./index.tendril.arbiter.v1";
