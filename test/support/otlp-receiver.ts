import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
// The protobufjs code generated from the official opentelemetry-proto definitions, as OpenTelemetry's own
// otlp-transformer shipped it (the last release that did, installed under the alias `otlp-proto`).
import protoRoot from 'otlp-proto/build/src/generated/root';

/** An attribute value as OTLP carries it: one of the typed fields is set. */
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | { toNumber(): number };
  doubleValue?: number;
  arrayValue?: { values: AnyValue[] };
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
export interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  events: { name: string; attributes: Record<string, unknown> }[];
  status: { code: number };
}
export interface ExportedMetric {
  name: string;
  unit: string;
  /** The data points' attributes and counts (histograms only; the gateway exports no other kind). */
  points: { attributes: Record<string, unknown>; count: number; sum: number }[];
}

interface DecodedMessage {
  resourceSpans?: { scopeSpans?: { spans?: RawSpan[] }[] }[];
  resourceMetrics?: { scopeMetrics?: { metrics?: RawMetric[] }[] }[];
}
interface RawSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId?: Uint8Array;
  name: string;
  kind: number;
  attributes?: KeyValue[];
  events?: { name: string; attributes?: KeyValue[] }[];
  status?: { code?: number };
}
interface RawMetric {
  name: string;
  unit?: string;
  histogram?: {
    dataPoints?: { attributes?: KeyValue[]; count?: number | { toNumber(): number }; sum?: number }[];
  };
}
interface MessageType {
  decode(bytes: Uint8Array): DecodedMessage;
}
interface OtlpRoot {
  opentelemetry: {
    proto: {
      collector: {
        trace: { v1: { ExportTraceServiceRequest: MessageType } };
        metrics: { v1: { ExportMetricsServiceRequest: MessageType } };
      };
    };
  };
}
const collector = (protoRoot as unknown as OtlpRoot).opentelemetry.proto.collector;

/**
 * An OTLP/HTTP receiver on 127.0.0.1, port 0, for the protobuf encoding (the SDK's default): it keeps every raw
 * body (to search for what must never be exported) and the decoded spans and metrics.
 */
export class OtlpReceiver {
  readonly bodies: Buffer[] = [];
  readonly spans: ExportedSpan[] = [];
  readonly metrics: ExportedMetric[] = [];
  readonly paths: string[] = [];
  private readonly server: Server;

  constructor() {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks);
        this.bodies.push(body);
        this.paths.push(request.url ?? '');
        if (request.url === '/v1/traces') {
          this.takeSpans(collector.trace.v1.ExportTraceServiceRequest.decode(body));
        } else if (request.url === '/v1/metrics') {
          this.takeMetrics(collector.metrics.v1.ExportMetricsServiceRequest.decode(body));
        }
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  clear(): void {
    this.bodies.length = 0;
    this.spans.length = 0;
    this.metrics.length = 0;
    this.paths.length = 0;
  }

  private takeSpans(message: DecodedMessage): void {
    for (const resource of message.resourceSpans ?? []) {
      for (const scope of resource.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            traceId: hex(span.traceId),
            spanId: hex(span.spanId),
            parentSpanId: hex(span.parentSpanId),
            name: span.name,
            kind: span.kind,
            attributes: attributesOf(span.attributes),
            events: (span.events ?? []).map((event) => ({
              name: event.name,
              attributes: attributesOf(event.attributes),
            })),
            status: { code: span.status?.code ?? 0 },
          });
        }
      }
    }
  }

  private takeMetrics(message: DecodedMessage): void {
    for (const resource of message.resourceMetrics ?? []) {
      for (const scope of resource.scopeMetrics ?? []) {
        for (const metric of scope.metrics ?? []) {
          this.metrics.push({
            name: metric.name,
            unit: metric.unit ?? '',
            points: (metric.histogram?.dataPoints ?? []).map((point) => ({
              attributes: attributesOf(point.attributes),
              count: numberOf(point.count),
              sum: point.sum ?? 0,
            })),
          });
        }
      }
    }
  }
}

function hex(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString('hex') : '';
}

function numberOf(value: number | { toNumber(): number } | undefined): number {
  return typeof value === 'object' ? value.toNumber() : (value ?? 0);
}

/** The generated code names the set field of the `value` oneof in a virtual `value` property. */
function valueOf(value: AnyValue & { value?: keyof AnyValue }): unknown {
  switch (value.value) {
    case 'arrayValue':
      return (value.arrayValue?.values ?? []).map(valueOf);
    case 'intValue':
      return numberOf(value.intValue);
    case undefined:
      return undefined;
    default:
      return value[value.value];
  }
}

function attributesOf(attributes: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((attributes ?? []).map(({ key, value }) => [key, valueOf(value)]));
}
