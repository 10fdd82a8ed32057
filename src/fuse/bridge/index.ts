/** The FUSE bridge: a session over one /dev/fuse connection driving a FileSystemApi. */
export { FuseSession, type FuseSessionOptions, type Logger } from './session';
export type { BatchHandler, FuseTransport } from './transport';
export type { Negotiated } from './init';
export { Notifier } from './notify';
export { PassthroughRegistry } from './passthrough';
