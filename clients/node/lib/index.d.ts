export * as google from "./index.google";
export * as tendril from "./index.tendril";
