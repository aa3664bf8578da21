import {
  describeValue,
  ownField,
  type Problems,
  readObject,
  rejectUnknownFields,
} from './fields.ts';

/** OpenTelemetry export of the nodes' spans (see src/node/tracing/). */
export interface TracingConfig {
  /**
   * Where to POST spans (OTLP over HTTP, e.g. http://127.0.0.1:4318/v1/traces); null:
   * no export (the default), and the SDK is not even loaded.
   */
  readonly otlpEndpoint: string | null;
}

export const NO_TRACING: TracingConfig = Object.freeze({ otlpEndpoint: null });

export function readTracingSection(problems: Problems, value: unknown): TracingConfig {
  if (value === undefined) return NO_TRACING;
  const object = readObject(problems, 'tracing', value);
  if (object === undefined) return NO_TRACING;
  rejectUnknownFields(problems, 'tracing', object, ['otlpEndpoint']);
  const endpoint = ownField(object, 'otlpEndpoint');
  if (endpoint === undefined || endpoint === null) return NO_TRACING;
  if (typeof endpoint === 'string' && isHttpUrl(endpoint)) {
    return Object.freeze({ otlpEndpoint: endpoint });
  }
  problems.add(
    'tracing.otlpEndpoint',
    `expected an http:// or https:// URL (an OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces), got ${describeValue(endpoint)}`,
  );
  return NO_TRACING;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
