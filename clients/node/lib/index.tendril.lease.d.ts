export * as v1 from "./index.tendril.lease.v1";
