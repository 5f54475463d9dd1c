export * from "./tendril/arbiter/v1/arbiter";
