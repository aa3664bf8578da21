import { describe, expect, it } from 'vitest';
import { ConfigError, parseClusterConfig } from '../../src/config/index.ts';

const BASE = {
  nodes: [
    {
      id: 'n1',
      peerAddress: '127.0.0.1:7001',
      clientAddress: '127.0.0.1:7101',
      metricsAddress: '127.0.0.1:9101',
    },
  ],
  dataDir: './data',
};

function problemsOf(extra: object): string[] {
  try {
    parseClusterConfig({ ...BASE, ...extra }, '/tmp');
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
}

describe('tracing config', () => {
  it('is off unless tracing.otlpEndpoint is set', () => {
    expect(parseClusterConfig(BASE, '/tmp').tracing).toEqual({ otlpEndpoint: null });
    expect(
      parseClusterConfig(
        { ...BASE, tracing: { otlpEndpoint: 'http://127.0.0.1:4318/v1/traces' } },
        '/tmp',
      ).tracing,
    ).toEqual({ otlpEndpoint: 'http://127.0.0.1:4318/v1/traces' });
  });

  it('names what is wrong', () => {
    expect(problemsOf({ tracing: { otlpEndpoint: 'grpc://collector:4317' } }).join('\n')).toMatch(
      /tracing\.otlpEndpoint: expected an http:\/\/ or https:\/\/ URL.*"grpc:\/\/collector:4317"/,
    );
    expect(problemsOf({ tracing: { endpoint: 'http://x' } }).join('\n')).toMatch(
      /tracing\.endpoint: unknown field/,
    );
    expect(problemsOf({ tracing: 'http://x' }).join('\n')).toMatch(/tracing: expected an object/);
  });
});
