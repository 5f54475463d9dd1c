export * as v1 from "./index.tendril.submit.v1";
