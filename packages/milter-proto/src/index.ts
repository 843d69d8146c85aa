export * from './smtp-reply.js';
export * from './policy-attributes.js';
export * from './policy-codec.js';
export * from './policy-action.js';
export * from './policy-transport.js';
export * from './policy-client.js';
