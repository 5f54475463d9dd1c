module tendril/clients/go

go 1.19

// The versions Debian bookworm packages (golang-google-grpc-dev, golang-google-protobuf-dev),
// which scripts/go_check.py builds against offline; with network access `go mod tidy` fills
// in go.sum for a module-mode build.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
