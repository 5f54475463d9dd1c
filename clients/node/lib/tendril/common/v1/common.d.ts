import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
/**
 * Resources describes an amount of compute: what a worker has, what a request asks for,
 * or what a lease reserves.
 */
export interface Resources {
    /** Number of CPU cores (may be fractional). */
    cpu: number;
    /** Main memory in GiB. */
    memoryGib: number;
    /** Disk space in GiB. */
    storageGib: number;
    /** Number of whole GPUs. */
    gpu: number;
}
/** ExecutorRef names a kind of executor a worker can run, e.g. class "train", name "diloco". */
export interface ExecutorRef {
    /** The executor class: "train", "aggregate", "example", ... */
    executorClass: string;
    /** The executor name within its class, e.g. "diloco". */
    name: string;
}
/** PeerRef identifies a peer of the network and where to reach it. */
export interface PeerRef {
    /** Stable peer id (the certificate's common name when mTLS is on). */
    id: string;
    /** gRPC address "host:port" of the peer's public service. */
    address: string;
}
/** WorkerEndpoints lists the addresses of a worker's services. */
export interface WorkerEndpoints {
    /** ArbiterService address. */
    arbiter: string;
    /** LeaseService address. */
    lease: string;
    /** JobService address. */
    job: string;
    /** DataFetcherService address. */
    dataFetcher: string;
    /** ParameterServerService address. */
    parameterServer: string;
}
/** WorkerRecord is what a worker publishes about itself in the gateway registry. */
export interface WorkerRecord {
    /** Worker id. */
    workerId: string;
    /** Addresses of the worker's services. */
    endpoints: WorkerEndpoints | undefined;
    /** Resources the worker detected (or was configured with). */
    resources: Resources | undefined;
    /** Executors the worker can run. */
    executors: ExecutorRef[];
    /** Price floor per unit of score the worker asks for. */
    price: number;
    /** Tendril version of the worker. */
    version: string;
}
export declare const Resources: MessageFns<Resources>;
export declare const ExecutorRef: MessageFns<ExecutorRef>;
export declare const PeerRef: MessageFns<PeerRef>;
export declare const WorkerEndpoints: MessageFns<WorkerEndpoints>;
export declare const WorkerRecord: MessageFns<WorkerRecord>;
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
