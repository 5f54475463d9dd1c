export * from "./tendril/job/v1/job";
