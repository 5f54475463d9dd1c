export * as v1 from "./index.tendril.paramserver.v1";
