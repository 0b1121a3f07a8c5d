// Loads proto/csi.proto at run time (protobufjs) and turns each service into a grpc-js
// ServiceDefinition, so the CSI servers work with plain objects: snake_case fields as in the
// spec, enums as their names, int64 as numbers (volumes stay far below 2^53 bytes).

import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { ServiceDefinition, MethodDefinition } from '@grpc/grpc-js';

const protoPath = fileURLToPath(new URL('../../../proto/csi.proto', import.meta.url));
const protoPathSrc = fileURLToPath(new URL('../../proto/csi.proto', import.meta.url));

let root: protobuf.Root | undefined;

function loadRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  // From src/ (tsx) the proto is two levels up; from dist/src/ three.
  let loaded: protobuf.Root;
  try {
    loaded = r.loadSync(protoPathSrc, { keepCase: true });
  } catch {
    loaded = r.loadSync(protoPath, { keepCase: true });
  }
  loaded.resolveAll();
  root = loaded;
  return loaded;
}

const toObjectOptions: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

/** Looks a message type up by its name inside package csi.v1. */
export function messageType(name: string): protobuf.Type {
  return loadRoot().lookupType(`csi.v1.${name}`);
}

/** Encodes a plain object as the named message, as the server does for a response. */
export function encodeMessage(name: string, value: object): Buffer {
  const type = messageType(name);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
}

/** Decodes bytes of the named message into a plain object, as the server does for a request. */
export function decodeMessage<T = Record<string, unknown>>(name: string, bytes: Uint8Array): T {
  const type = messageType(name);
  return type.toObject(type.decode(bytes), toObjectOptions) as T;
}

export type CsiServiceName = 'Identity' | 'Controller' | 'Node' | 'SnapshotMetadata';

/** The grpc-js definition of one CSI service: paths /csi.v1.<Service>/<Method>. */
export function serviceDefinition(name: CsiServiceName): ServiceDefinition {
  const service = loadRoot().lookupService(`csi.v1.${name}`);
  const def: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const req = method.resolvedRequestType;
    const res = method.resolvedResponseType;
    if (!req || !res) throw new Error(`csi.proto: method ${name}.${method.name} has unresolved types`);
    def[method.name] = {
      path: `/csi.v1.${name}/${method.name}`,
      requestStream: false,
      responseStream: method.responseStream === true,
      requestSerialize: (v: unknown) => Buffer.from(req.encode(req.fromObject(v as object)).finish()),
      requestDeserialize: (b: Buffer) => req.toObject(req.decode(b), toObjectOptions),
      responseSerialize: (v: unknown) => Buffer.from(res.encode(res.fromObject(v as object)).finish()),
      responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), toObjectOptions),
      originalName: method.name,
    };
  }
  return def as ServiceDefinition;
}
