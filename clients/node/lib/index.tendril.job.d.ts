export * as v1 from "./index.tendril.job.v1";
