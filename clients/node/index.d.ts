// Types for index.js: the generated stubs plus the @grpc/grpc-js they were generated against.
export * as grpc from "@grpc/grpc-js";
export { google, tendril } from "./lib/index";
