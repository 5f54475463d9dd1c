export * from "./tendril/scheduler/v1/scheduler";
