"use strict";
// Entry point of @tendril/client: the generated stubs (lib/, from protos/ by
// scripts/gen_node.py) plus the @grpc/grpc-js they were generated against.
// NOTE: grpc is re-exported so programs that use these stubs share one grpc-js instance with
// them (two copies would not accept each other's credentials and metadata objects).
const grpc = require("@grpc/grpc-js");
const { google, tendril } = require("./lib/index.js");

module.exports = { grpc, google, tendril };
