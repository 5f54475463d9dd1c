import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Resources } from "../../common/v1/common";
/** LeaseKind tells a temporary reservation from an accepted one. */
export declare enum LeaseKind {
    /** LEASE_KIND_UNSPECIFIED - Not set. */
    LEASE_KIND_UNSPECIFIED = 0,
    /** LEASE_KIND_TEMPORARY - Held while an offer is out (short). */
    LEASE_KIND_TEMPORARY = 1,
    /** LEASE_KIND_RENEWABLE - Accepted; lives as long as its owner renews it. */
    LEASE_KIND_RENEWABLE = 2,
    UNRECOGNIZED = -1
}
export declare function leaseKindFromJSON(object: any): LeaseKind;
export declare function leaseKindToJSON(object: LeaseKind): string;
/** LeaseEventType says what happened to a lease. */
export declare enum LeaseEventType {
    /** LEASE_EVENT_TYPE_UNSPECIFIED - Not set. */
    LEASE_EVENT_TYPE_UNSPECIFIED = 0,
    /** LEASE_EVENT_TYPE_EXISTING - Live when the watch started. */
    LEASE_EVENT_TYPE_EXISTING = 1,
    /** LEASE_EVENT_TYPE_RESERVED - Reserved (temporary). */
    LEASE_EVENT_TYPE_RESERVED = 2,
    /** LEASE_EVENT_TYPE_CONFIRMED - Confirmed (renewable). */
    LEASE_EVENT_TYPE_CONFIRMED = 3,
    /** LEASE_EVENT_TYPE_RENEWED - Renewed. */
    LEASE_EVENT_TYPE_RENEWED = 4,
    /** LEASE_EVENT_TYPE_RELEASED - Released by its owner or the arbiter. */
    LEASE_EVENT_TYPE_RELEASED = 5,
    /** LEASE_EVENT_TYPE_EXPIRED - Expired. */
    LEASE_EVENT_TYPE_EXPIRED = 6,
    UNRECOGNIZED = -1
}
export declare function leaseEventTypeFromJSON(object: any): LeaseEventType;
export declare function leaseEventTypeToJSON(object: LeaseEventType): string;
/** Lease is one reservation. */
export interface Lease {
    /** Lease id. */
    leaseId: string;
    /** Owner: the scheduler's peer id. */
    ownerId: string;
    /** Temporary or renewable. */
    kind: LeaseKind;
    /** Reserved resources. */
    resources: Resources | undefined;
    /** Agreed price. */
    price: number;
    /** The request this lease answers. */
    requestId: string;
    /** When it was reserved. */
    createdAt: Date | undefined;
    /** When it expires unless renewed. */
    expiresAt: Date | undefined;
}
/** ReserveRequest asks for a temporary lease. */
export interface ReserveRequest {
    /** Future owner (the scheduler's id). */
    ownerId: string;
    /** Resources to hold; must fit in the free resources. */
    resources: Resources | undefined;
    /** Price. */
    price: number;
    /** The request answered. */
    requestId: string;
    /** Seconds the temporary lease lives; 0 means the configured default (0.5). */
    ttlSeconds: number;
}
/** ReserveResponse returns the new lease. */
export interface ReserveResponse {
    /** The temporary lease. */
    lease: Lease | undefined;
}
/** ConfirmRequest names a temporary lease. */
export interface ConfirmRequest {
    /** Lease id. */
    leaseId: string;
}
/** ConfirmResponse returns the renewable lease. */
export interface ConfirmResponse {
    /** The lease, now renewable. */
    lease: Lease | undefined;
}
/** RenewRequest names a lease. */
export interface RenewRequest {
    /** Lease id. */
    leaseId: string;
}
/** RenewResponse returns the renewed lease. */
export interface RenewResponse {
    /** The lease with its new expiry. */
    lease: Lease | undefined;
}
/** ReleaseRequest names a lease. */
export interface ReleaseRequest {
    /** Lease id. */
    leaseId: string;
}
/** ReleaseResponse returns the released lease. */
export interface ReleaseResponse {
    /** The lease as it was. */
    lease: Lease | undefined;
}
/** GetRequest names a lease. */
export interface GetRequest {
    /** Lease id. */
    leaseId: string;
}
/** GetResponse returns a lease. */
export interface GetResponse {
    /** The lease. */
    lease: Lease | undefined;
}
/** ListRequest filters the listing. */
export interface ListRequest {
    /** Only leases of this owner; empty for all. */
    ownerId: string;
}
/** ListResponse lists live leases. */
export interface ListResponse {
    /** Live leases, oldest first. */
    leases: Lease[];
}
/** WatchRequest filters the watch. */
export interface WatchRequest {
    /** Only leases of this owner; empty for all. */
    ownerId: string;
}
/** WatchResponse is one change. */
export interface WatchResponse {
    /** What happened. */
    type: LeaseEventType;
    /** The lease. */
    lease: Lease | undefined;
}
/** GetCapacityRequest is empty. */
export interface GetCapacityRequest {
}
/** GetCapacityResponse tells the worker's resources. */
export interface GetCapacityResponse {
    /** All the worker offers. */
    total: Resources | undefined;
    /** Held by live leases. */
    reserved: Resources | undefined;
    /** total - reserved. */
    free: Resources | undefined;
}
export declare const Lease: MessageFns<Lease>;
export declare const ReserveRequest: MessageFns<ReserveRequest>;
export declare const ReserveResponse: MessageFns<ReserveResponse>;
export declare const ConfirmRequest: MessageFns<ConfirmRequest>;
export declare const ConfirmResponse: MessageFns<ConfirmResponse>;
export declare const RenewRequest: MessageFns<RenewRequest>;
export declare const RenewResponse: MessageFns<RenewResponse>;
export declare const ReleaseRequest: MessageFns<ReleaseRequest>;
export declare const ReleaseResponse: MessageFns<ReleaseResponse>;
export declare const GetRequest: MessageFns<GetRequest>;
export declare const GetResponse: MessageFns<GetResponse>;
export declare const ListRequest: MessageFns<ListRequest>;
export declare const ListResponse: MessageFns<ListResponse>;
export declare const WatchRequest: MessageFns<WatchRequest>;
export declare const WatchResponse: MessageFns<WatchResponse>;
export declare const GetCapacityRequest: MessageFns<GetCapacityRequest>;
export declare const GetCapacityResponse: MessageFns<GetCapacityResponse>;
/**
 * LeaseService is the worker's ledger of reservations. A temporary lease holds resources
 * while an offer is out; an accepted offer turns it renewable (the owner's first Renew or the
 * arbiter's Confirm, whichever comes first); a lease that is not renewed expires and its jobs
 * are cancelled. The caller's identity (metadata "tendril-peer-id",
 * or the certificate under mTLS) must be the lease's owner to renew or release it.
 */
export type LeaseServiceService = typeof LeaseServiceService;
export declare const LeaseServiceService: {
    /**
     * Reserve takes resources for a temporary lease (used by the arbiter).
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   PERMISSION_DENIED NOT_THE_WORKER: the caller is not the worker itself.
     *   INVALID_ARGUMENT OWNER_ID_MISSING, OWNER_ID_TOO_LONG, REQUEST_ID_TOO_LONG: owner_id is empty,
     *     or an id is over 256 characters.
     *   INVALID_ARGUMENT RESOURCES_INVALID, RESOURCES_EMPTY: resources are negative, not finite, or
     *     all zero.
     *   INVALID_ARGUMENT PRICE_INVALID: price is negative or not finite.
     *   INVALID_ARGUMENT TTL_INVALID: ttl_seconds is outside [0, the renewable lease time].
     *   RESOURCE_EXHAUSTED DOES_NOT_FIT: the resources exceed the free ones (metadata "free").
     */
    readonly reserve: {
        readonly path: "/tendril.lease.v1.LeaseService/Reserve";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ReserveRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReserveRequest;
        readonly responseSerialize: (value: ReserveResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReserveResponse;
    };
    /**
     * Confirm turns a temporary lease renewable once its offer was accepted (used by the
     * arbiter). Idempotent: a lease that is already renewable (its owner renewed it first) is
     * returned unchanged.
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   PERMISSION_DENIED NOT_THE_WORKER: the caller is not the worker itself.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id (never existed, released, or its
     *     offer was withdrawn).
     *   FAILED_PRECONDITION LEASE_EXPIRED: the temporary lease expired before its confirmation.
     */
    readonly confirm: {
        readonly path: "/tendril.lease.v1.LeaseService/Confirm";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ConfirmRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ConfirmRequest;
        readonly responseSerialize: (value: ConfirmResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ConfirmResponse;
    };
    /**
     * Renew extends a lease to now + the renewable lease time (owner only). The owner's first
     * Renew of a temporary lease accepts its offer: the lease turns renewable at once, so a
     * scheduler renews as it answers ACCEPTED and never waits for Confirm. A lease whose offer
     * was withdrawn (rejected, timed out) or that expired is gone: NOT_FOUND or LEASE_EXPIRED.
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id (never existed, released, or its
     *     offer was withdrawn).
     *   PERMISSION_DENIED NOT_THE_OWNER: the lease belongs to another peer.
     *   FAILED_PRECONDITION LEASE_EXPIRED: the lease expired; win a new offer.
     */
    readonly renew: {
        readonly path: "/tendril.lease.v1.LeaseService/Renew";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: RenewRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => RenewRequest;
        readonly responseSerialize: (value: RenewResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => RenewResponse;
    };
    /**
     * Release frees a lease at once and cancels its jobs (owner only).
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id.
     *   PERMISSION_DENIED NOT_THE_OWNER: the lease belongs to another peer (the worker itself may
     *     release any).
     */
    readonly release: {
        readonly path: "/tendril.lease.v1.LeaseService/Release";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ReleaseRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReleaseRequest;
        readonly responseSerialize: (value: ReleaseResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReleaseResponse;
    };
    /**
     * Get returns one live lease.
     *
     * Errors:
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id.
     */
    readonly get: {
        readonly path: "/tendril.lease.v1.LeaseService/Get";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetRequest;
        readonly responseSerialize: (value: GetResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetResponse;
    };
    /**
     * List returns live leases.
     *
     * Errors: none of its own.
     */
    readonly list: {
        readonly path: "/tendril.lease.v1.LeaseService/List";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListRequest;
        readonly responseSerialize: (value: ListResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListResponse;
    };
    /**
     * Watch streams the live leases, then every change.
     *
     * Errors:
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 events behind; watch again, then re-read with
     *     Get/List.
     */
    readonly watch: {
        readonly path: "/tendril.lease.v1.LeaseService/Watch";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchRequest;
        readonly responseSerialize: (value: WatchResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchResponse;
    };
    /**
     * GetCapacity returns the worker's total, reserved and free resources.
     *
     * Errors: none of its own.
     */
    readonly getCapacity: {
        readonly path: "/tendril.lease.v1.LeaseService/GetCapacity";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetCapacityRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetCapacityRequest;
        readonly responseSerialize: (value: GetCapacityResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetCapacityResponse;
    };
};
export interface LeaseServiceServer extends UntypedServiceImplementation {
    /**
     * Reserve takes resources for a temporary lease (used by the arbiter).
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   PERMISSION_DENIED NOT_THE_WORKER: the caller is not the worker itself.
     *   INVALID_ARGUMENT OWNER_ID_MISSING, OWNER_ID_TOO_LONG, REQUEST_ID_TOO_LONG: owner_id is empty,
     *     or an id is over 256 characters.
     *   INVALID_ARGUMENT RESOURCES_INVALID, RESOURCES_EMPTY: resources are negative, not finite, or
     *     all zero.
     *   INVALID_ARGUMENT PRICE_INVALID: price is negative or not finite.
     *   INVALID_ARGUMENT TTL_INVALID: ttl_seconds is outside [0, the renewable lease time].
     *   RESOURCE_EXHAUSTED DOES_NOT_FIT: the resources exceed the free ones (metadata "free").
     */
    reserve: handleUnaryCall<ReserveRequest, ReserveResponse>;
    /**
     * Confirm turns a temporary lease renewable once its offer was accepted (used by the
     * arbiter). Idempotent: a lease that is already renewable (its owner renewed it first) is
     * returned unchanged.
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   PERMISSION_DENIED NOT_THE_WORKER: the caller is not the worker itself.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id (never existed, released, or its
     *     offer was withdrawn).
     *   FAILED_PRECONDITION LEASE_EXPIRED: the temporary lease expired before its confirmation.
     */
    confirm: handleUnaryCall<ConfirmRequest, ConfirmResponse>;
    /**
     * Renew extends a lease to now + the renewable lease time (owner only). The owner's first
     * Renew of a temporary lease accepts its offer: the lease turns renewable at once, so a
     * scheduler renews as it answers ACCEPTED and never waits for Confirm. A lease whose offer
     * was withdrawn (rejected, timed out) or that expired is gone: NOT_FOUND or LEASE_EXPIRED.
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id (never existed, released, or its
     *     offer was withdrawn).
     *   PERMISSION_DENIED NOT_THE_OWNER: the lease belongs to another peer.
     *   FAILED_PRECONDITION LEASE_EXPIRED: the lease expired; win a new offer.
     */
    renew: handleUnaryCall<RenewRequest, RenewResponse>;
    /**
     * Release frees a lease at once and cancels its jobs (owner only).
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id.
     *   PERMISSION_DENIED NOT_THE_OWNER: the lease belongs to another peer (the worker itself may
     *     release any).
     */
    release: handleUnaryCall<ReleaseRequest, ReleaseResponse>;
    /**
     * Get returns one live lease.
     *
     * Errors:
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id.
     */
    get: handleUnaryCall<GetRequest, GetResponse>;
    /**
     * List returns live leases.
     *
     * Errors: none of its own.
     */
    list: handleUnaryCall<ListRequest, ListResponse>;
    /**
     * Watch streams the live leases, then every change.
     *
     * Errors:
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 events behind; watch again, then re-read with
     *     Get/List.
     */
    watch: handleServerStreamingCall<WatchRequest, WatchResponse>;
    /**
     * GetCapacity returns the worker's total, reserved and free resources.
     *
     * Errors: none of its own.
     */
    getCapacity: handleUnaryCall<GetCapacityRequest, GetCapacityResponse>;
}
export interface LeaseServiceClient extends Client {
    /**
     * Reserve takes resources for a temporary lease (used by the arbiter).
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   PERMISSION_DENIED NOT_THE_WORKER: the caller is not the worker itself.
     *   INVALID_ARGUMENT OWNER_ID_MISSING, OWNER_ID_TOO_LONG, REQUEST_ID_TOO_LONG: owner_id is empty,
     *     or an id is over 256 characters.
     *   INVALID_ARGUMENT RESOURCES_INVALID, RESOURCES_EMPTY: resources are negative, not finite, or
     *     all zero.
     *   INVALID_ARGUMENT PRICE_INVALID: price is negative or not finite.
     *   INVALID_ARGUMENT TTL_INVALID: ttl_seconds is outside [0, the renewable lease time].
     *   RESOURCE_EXHAUSTED DOES_NOT_FIT: the resources exceed the free ones (metadata "free").
     */
    reserve(request: ReserveRequest, callback: (error: ServiceError | null, response: ReserveResponse) => void): ClientUnaryCall;
    reserve(request: ReserveRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ReserveResponse) => void): ClientUnaryCall;
    reserve(request: ReserveRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReserveResponse) => void): ClientUnaryCall;
    /**
     * Confirm turns a temporary lease renewable once its offer was accepted (used by the
     * arbiter). Idempotent: a lease that is already renewable (its owner renewed it first) is
     * returned unchanged.
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   PERMISSION_DENIED NOT_THE_WORKER: the caller is not the worker itself.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id (never existed, released, or its
     *     offer was withdrawn).
     *   FAILED_PRECONDITION LEASE_EXPIRED: the temporary lease expired before its confirmation.
     */
    confirm(request: ConfirmRequest, callback: (error: ServiceError | null, response: ConfirmResponse) => void): ClientUnaryCall;
    confirm(request: ConfirmRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ConfirmResponse) => void): ClientUnaryCall;
    confirm(request: ConfirmRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ConfirmResponse) => void): ClientUnaryCall;
    /**
     * Renew extends a lease to now + the renewable lease time (owner only). The owner's first
     * Renew of a temporary lease accepts its offer: the lease turns renewable at once, so a
     * scheduler renews as it answers ACCEPTED and never waits for Confirm. A lease whose offer
     * was withdrawn (rejected, timed out) or that expired is gone: NOT_FOUND or LEASE_EXPIRED.
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id (never existed, released, or its
     *     offer was withdrawn).
     *   PERMISSION_DENIED NOT_THE_OWNER: the lease belongs to another peer.
     *   FAILED_PRECONDITION LEASE_EXPIRED: the lease expired; win a new offer.
     */
    renew(request: RenewRequest, callback: (error: ServiceError | null, response: RenewResponse) => void): ClientUnaryCall;
    renew(request: RenewRequest, metadata: Metadata, callback: (error: ServiceError | null, response: RenewResponse) => void): ClientUnaryCall;
    renew(request: RenewRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: RenewResponse) => void): ClientUnaryCall;
    /**
     * Release frees a lease at once and cancels its jobs (owner only).
     *
     * Errors:
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id.
     *   PERMISSION_DENIED NOT_THE_OWNER: the lease belongs to another peer (the worker itself may
     *     release any).
     */
    release(request: ReleaseRequest, callback: (error: ServiceError | null, response: ReleaseResponse) => void): ClientUnaryCall;
    release(request: ReleaseRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ReleaseResponse) => void): ClientUnaryCall;
    release(request: ReleaseRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReleaseResponse) => void): ClientUnaryCall;
    /**
     * Get returns one live lease.
     *
     * Errors:
     *   INVALID_ARGUMENT LEASE_ID_MISSING, LEASE_ID_TOO_LONG: lease_id is empty or over 256
     *     characters.
     *   NOT_FOUND LEASE_NOT_FOUND: no live lease has that id.
     */
    get(request: GetRequest, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    get(request: GetRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    get(request: GetRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    /**
     * List returns live leases.
     *
     * Errors: none of its own.
     */
    list(request: ListRequest, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    list(request: ListRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    list(request: ListRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    /**
     * Watch streams the live leases, then every change.
     *
     * Errors:
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 events behind; watch again, then re-read with
     *     Get/List.
     */
    watch(request: WatchRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
    watch(request: WatchRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
    /**
     * GetCapacity returns the worker's total, reserved and free resources.
     *
     * Errors: none of its own.
     */
    getCapacity(request: GetCapacityRequest, callback: (error: ServiceError | null, response: GetCapacityResponse) => void): ClientUnaryCall;
    getCapacity(request: GetCapacityRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetCapacityResponse) => void): ClientUnaryCall;
    getCapacity(request: GetCapacityRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetCapacityResponse) => void): ClientUnaryCall;
}
export declare const LeaseServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): LeaseServiceClient;
    service: typeof LeaseServiceService;
    serviceName: string;
};
type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;
type DeepPartial<T> = T extends Builtin ? T : T extends globalThis.Array<infer U> ? globalThis.Array<DeepPartial<U>> : T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends {} ? {
    [K in keyof T]?: DeepPartial<T[K]>;
} : Partial<T>;
type KeysOfUnion<T> = T extends T ? keyof T : never;
type Exact<P, I extends P> = P extends Builtin ? P : P & {
    [K in keyof P]: Exact<P[K], I[K]>;
} & {
    [K in Exclude<keyof I, KeysOfUnion<P>>]: never;
};
interface MessageFns<T> {
    encode(message: T, writer?: BinaryWriter): BinaryWriter;
    decode(input: BinaryReader | Uint8Array, length?: number): T;
    fromJSON(object: any): T;
    toJSON(message: T): unknown;
    create<I extends Exact<DeepPartial<T>, I>>(base?: I): T;
    fromPartial<I extends Exact<DeepPartial<T>, I>>(object: I): T;
}
export {};
