export * as protobuf from "./index.google.protobuf";
