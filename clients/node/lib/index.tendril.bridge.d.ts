export * as v1 from "./index.tendril.bridge.v1";
