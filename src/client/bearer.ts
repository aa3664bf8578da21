import * as grpc from '@grpc/grpc-js';

/**
 * Sends `authorization: Bearer <token>` with every call of a client (issue 15). An
 * interceptor rather than call credentials, which grpc-js allows only on TLS channels:
 * a cluster may take tokens over plaintext on a trusted network.
 */
export function bearerInterceptor(token: string): grpc.Interceptor {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', value);
        next(metadata, listener);
      },
    });
}
