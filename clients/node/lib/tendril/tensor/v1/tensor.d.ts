import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
/** Codec is how tensor values travel on the wire. Accumulation is always fp32. */
export declare enum Codec {
    /** CODEC_UNSPECIFIED - Not set (treated as fp32). */
    CODEC_UNSPECIFIED = 0,
    /** CODEC_FP32 - 32-bit floats, unchanged. */
    CODEC_FP32 = 1,
    /** CODEC_BF16 - bfloat16: half the bytes, about 3 significant digits. */
    CODEC_BF16 = 2,
    /** CODEC_INT8 - int8 with one fp32 absmax scale per block of values: about a quarter of the bytes. */
    CODEC_INT8 = 3,
    /**
     * CODEC_INT4 - int4 with one fp32 absmax scale per block of values (round(x / (absmax / 7)) in [-7, 7]),
     * packed two values per byte (value 2i in the low nibble of byte i, two's complement; an odd
     * tensor's last high nibble is 0): about an eighth of the bytes. A tensor's dtype is "U8";
     * its shape is the tensor's own shape, its bytes hold ceil(numel / 2).
     */
    CODEC_INT4 = 4,
    /**
     * CODEC_SPARSE - Sparse 2-bit (SparseLoCo): per chunk of block_size values (the block size, 64..32768) the
     * 64 largest |x| (zeros never), each as a uint16 index within its chunk (0xFFFF: an unused
     * slot) and a 2-bit code (bit 0 sign, bit 1 level: four to a byte, first value lowest),
     * with two fp32 scales per chunk (the low and the high magnitude). A tensor's dtype is "U8",
     * its shape the tensor's own; its bytes hold the indices of all its slots, then their codes.
     * Updates of a run in this codec are served as CODEC_INT8.
     */
    CODEC_SPARSE = 5,
    UNRECOGNIZED = -1
}
export declare function codecFromJSON(object: any): Codec;
export declare function codecToJSON(object: Codec): string;
/** DigestAlgorithm is the hash a payload digest is computed with. */
export declare enum DigestAlgorithm {
    /** DIGEST_ALGORITHM_UNSPECIFIED - Not set: the header's sha256 field is the digest. */
    DIGEST_ALGORITHM_UNSPECIFIED = 0,
    /** DIGEST_ALGORITHM_SHA256 - SHA-256; hex is 64 lowercase hex digits. */
    DIGEST_ALGORITHM_SHA256 = 1,
    /**
     * DIGEST_ALGORITHM_XXH3_128 - XXH3-128 (xxHash), canonical big-endian form; hex is 32 lowercase hex digits. Catches accidental
     * damage (bugs, bad memory, bad disks); tampering in transit is TLS's job (mTLS).
     */
    DIGEST_ALGORITHM_XXH3_128 = 2,
    UNRECOGNIZED = -1
}
export declare function digestAlgorithmFromJSON(object: any): DigestAlgorithm;
export declare function digestAlgorithmToJSON(object: DigestAlgorithm): string;
/** Digest of a whole payload and the hash it was computed with. */
export interface Digest {
    /** The hash. */
    algorithm: DigestAlgorithm;
    /** The digest in lowercase hex. */
    hex: string;
}
/** TensorInfo places one tensor in the stream's payload (SafeTensors layout). */
export interface TensorInfo {
    /** Tensor name. */
    name: string;
    /** Wire dtype as SafeTensors names it: "F32", "BF16", "I8", ... */
    dtype: string;
    /** Shape of the tensor (not of its encoded bytes: CODEC_INT4 and CODEC_SPARSE are flat bytes). */
    shape: number[];
    /** First byte of the tensor's data, relative to the start of the data section. */
    begin: number;
    /** One past its last byte. */
    end: number;
    /** For CODEC_INT8, CODEC_INT4 and CODEC_SPARSE: byte range of the tensor's fp32 block scales in the data section. */
    scalesBegin: number;
    /** For CODEC_INT8, CODEC_INT4 and CODEC_SPARSE: end of the scales. */
    scalesEnd: number;
}
/** StreamHeader opens a tensor stream. */
export interface StreamHeader {
    /** Id of this transfer; a resumed transfer reuses it. */
    streamId: string;
    /**
     * Deprecated: old name of run_id; read when run_id is empty.
     *
     * @deprecated
     */
    jobId: string;
    /** DiLoCo round. */
    round: number;
    /** Sending worker. */
    workerId: string;
    /** Weight of the contribution (samples processed). */
    weight: number;
    /** Wire codec. */
    codec: Codec;
    /** Tensors, in payload order. */
    tensors: TensorInfo[];
    /** Size in bytes of the whole payload: the SafeTensors file (header and data). */
    totalBytes: number;
    /** Hex sha256 of the whole payload; may be empty when digest is set. */
    sha256: string;
    /**
     * Block size of CODEC_INT8 and CODEC_INT4 (values per scale; even for CODEC_INT4), the chunk
     * of CODEC_SPARSE.
     */
    blockSize: number;
    /** Offset the chunks of this stream start at (non-zero when resuming). */
    startOffset: number;
    /** The DiLoCo run the tensors belong to. */
    runId: string;
    /**
     * Digest of the whole payload with its algorithm; when unset, sha256 is the digest. Receivers
     * verify whichever algorithm it names. Senders of this version send XXH3-128 here and leave
     * sha256 empty.
     */
    digest: Digest | undefined;
}
/** Chunk is a piece of the payload. */
export interface Chunk {
    /** Offset of data in the payload. */
    offset: number;
    /** The bytes (at most 1 MiB). */
    data: Buffer;
}
/**
 * StreamMessage is one message of a tensor stream: a header first, then chunks in order.
 *
 * A receiver (the ParameterServer for pushes, the client for pulls) refuses a stream that breaks
 * these rules with the errors below.
 *
 * Errors:
 *   INVALID_ARGUMENT BAD_HEADER: the first message is not a valid header (the message says what is
 *     wrong).
 *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
 *   INVALID_ARGUMENT OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG: a chunk does not start where the received
 *     bytes end, is empty, or runs past total_bytes.
 *   INVALID_ARGUMENT INCOMPLETE: the stream ended before total_bytes arrived.
 *   DATA_LOSS SHA256_MISMATCH: the payload's sha256 is not the header's.
 *   DATA_LOSS DIGEST_MISMATCH: the payload's digest (an algorithm other than sha256) is not the
 *     header's.
 *   INVALID_ARGUMENT BAD_PAYLOAD: the payload is not a SafeTensors file, or its header disagrees.
 *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection broke before the payload was through;
 *     resume from the bytes received.
 *   INVALID_ARGUMENT BAD_CHUNK: a pulled stream sends something else than a chunk after its header.
 *   INTERNAL BAD_FRAME: a message is not valid protobuf; the check runs while gRPC deserializes it,
 *     so the call ends INTERNAL without ErrorInfo.
 *
 * Data plane. A receiver that also listens on a plain TCP (or, under mTLS, TLS) data port may
 * move the payload bytes outside the call. The client asks with request metadata
 * "tendril-data-plane: tcp"; the server offers with initial metadata "tendril-data-port" (the
 * port, on the host the call is connected to), "tendril-data-ticket" (64 hex digits: a one-time
 * ticket, valid a few seconds, bound under mTLS to the caller's certificate) and, under TLS,
 * "tendril-data-cert-sha256" (the sha256 of the data port's certificate, which the client pins).
 * The client connects, sends the 8 bytes "TNDRLDP1" and the 32 ticket bytes, and reads one byte
 * 0x01 (a wrong, used or expired ticket gets the connection closed instead). Then the payload
 * bytes from the stream's start offset flow in one direction (pushes: client to server; pulls:
 * server to client, after the header was sent in the call) and the connection is closed. The
 * call carries the header, and ends with the server's verdict (a push's response or error, a
 * pull's status). A client that cannot use the offer sends chunks in the call instead (pushes)
 * or calls again without asking (pulls); a server without a data port never offers.
 */
export interface StreamMessage {
    /** First message. */
    header?: StreamHeader | undefined;
    /** Every later message. */
    chunk?: Chunk | undefined;
}
export declare const Digest: MessageFns<Digest>;
export declare const TensorInfo: MessageFns<TensorInfo>;
export declare const StreamHeader: MessageFns<StreamHeader>;
export declare const Chunk: MessageFns<Chunk>;
export declare const StreamMessage: MessageFns<StreamMessage>;
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
