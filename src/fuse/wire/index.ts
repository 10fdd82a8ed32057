/** The FUSE wire format: pure decode of requests and encode of replies and notifies. */
export * from './types';
export * from './protocol';
export * from './decode';
export * from './encode';
export * from './dirent';
export * from './notify';
