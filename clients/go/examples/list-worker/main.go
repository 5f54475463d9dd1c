// Command list-worker prints a Tendril worker's leases and jobs, like the Node example.
//
//	list-worker LEASE_ADDRESS JOB_ADDRESS [PEER_ID]
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	jobv1 "tendril/clients/go/tendril/job/v1"
	leasev1 "tendril/clients/go/tendril/lease/v1"
)

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 {
		fmt.Fprintln(os.Stderr, "usage: list-worker LEASE_ADDRESS JOB_ADDRESS [PEER_ID]")
		os.Exit(2)
	}
	peer := "go-list-worker"
	if len(os.Args) == 4 {
		peer = os.Args[3]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Tendril reads the caller's id from this metadata key (the certificate's CN under mTLS).
	ctx = metadata.AppendToOutgoingContext(ctx, "tendril-peer-id", peer)
	if err := run(ctx, os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "list-worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, leaseAddress, jobAddress string) error {
	leaseConn, err := grpc.DialContext(ctx, leaseAddress, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("dial %s: %w", leaseAddress, err)
	}
	defer leaseConn.Close()
	jobConn, err := grpc.DialContext(ctx, jobAddress, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("dial %s: %w", jobAddress, err)
	}
	defer jobConn.Close()

	leases, err := leasev1.NewLeaseServiceClient(leaseConn).List(ctx, &leasev1.ListRequest{})
	if err != nil {
		return fmt.Errorf("LeaseService.List at %s: %w", leaseAddress, err)
	}
	jobs, err := jobv1.NewJobServiceClient(jobConn).List(ctx, &jobv1.ListRequest{})
	if err != nil {
		return fmt.Errorf("JobService.List at %s: %w", jobAddress, err)
	}

	now := time.Now()
	out := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(out, "Leases at %s (%d)\n", leaseAddress, len(leases.Leases))
	fmt.Fprintln(out, "LEASE\tOWNER\tKIND\tCPU\tMEM_GIB\tGPU\tPRICE\tEXPIRES_IN")
	for _, l := range leases.Leases {
		r := l.GetResources()
		fmt.Fprintf(out, "%s\t%s\t%s\t%g\t%g\t%d\t%g\t%.1fs\n", l.LeaseId, l.OwnerId,
			strings.TrimPrefix(l.Kind.String(), "LEASE_KIND_"), r.GetCpu(), r.GetMemoryGib(), r.GetGpu(), l.Price,
			l.GetExpiresAt().AsTime().Sub(now).Seconds())
	}
	fmt.Fprintf(out, "\nJobs at %s (%d)\n", jobAddress, len(jobs.Jobs))
	fmt.Fprintln(out, "JOB\tSTATE\tEXECUTOR\tOWNER\tLEASE\tAGE\tREASON")
	for _, j := range jobs.Jobs {
		executor := j.GetExecutor().GetExecutorClass() + "/" + j.GetExecutor().GetName()
		fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\t%.1fs\t%s\n", j.JobId, strings.TrimPrefix(j.State.String(), "JOB_STATE_"),
			executor, j.OwnerId, j.LeaseId, now.Sub(j.GetCreatedAt().AsTime()).Seconds(), j.Reason)
	}
	return out.Flush()
}
