export * as v1 from "./index.tendril.scheduler.v1";
