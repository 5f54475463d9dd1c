export * as v1 from "./index.tendril.gateway.v1";
