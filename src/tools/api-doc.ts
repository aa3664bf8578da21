import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';

/**
 * The generated half of docs/api.md: every service, RPC, message, field and enum of
 * proto/dlm.proto, with the proto's own comments, so the reference cannot drift from the
 * contract (test/unit/api-doc.test.ts regenerates it and compares). The hand-written half
 * above the marker holds the rules that span RPCs (retries, limits, errors).
 * protobufjs is the parser @grpc/proto-loader itself uses.
 */
export const GENERATED_MARKER =
  '<!-- Generated from proto/dlm.proto by `npm run docs:api`; do not edit below this line. -->';

export function renderApiReference(protoPath: string): string {
  const parsed = protobuf.parse(readFileSync(protoPath, 'utf8'), {
    keepCase: true,
    alternateCommentMode: true,
  });
  const pkg = parsed.root.lookup(parsed.package ?? '') as protobuf.Namespace;
  const nested = pkg.nestedArray;
  const services = nested.filter(
    (each): each is protobuf.Service => each instanceof protobuf.Service,
  );
  const types = nested.filter((each): each is protobuf.Type => each instanceof protobuf.Type);
  const enums = nested.filter((each): each is protobuf.Enum => each instanceof protobuf.Enum);
  const lines: string[] = [GENERATED_MARKER, ''];
  for (const service of services) lines.push(...renderService(parsed.package ?? '', service));
  lines.push('## Messages', '');
  for (const type of types) lines.push(...renderType(type));
  lines.push('## Enums', '');
  for (const each of enums) lines.push(...renderEnum(each, '###'));
  return `${lines.join('\n').trimEnd()}\n`;
}

function renderService(pkg: string, service: protobuf.Service): string[] {
  const lines = [`## Service \`${pkg}.${service.name}\``, ''];
  if (service.comment) lines.push(service.comment, '');
  for (const method of service.methodsArray) {
    const request = `${method.requestStream ? 'stream ' : ''}${method.requestType}`;
    const response = `${method.responseStream ? 'stream ' : ''}${method.responseType}`;
    lines.push(`### ${service.name}.${method.name}`, '');
    lines.push(
      `\`rpc ${method.name}(${request}) returns (${response})\` — request [${method.requestType}](#${anchor(method.requestType)}), response [${method.responseType}](#${anchor(method.responseType)})`,
      '',
    );
    if (method.comment) lines.push(method.comment, '');
  }
  return lines;
}

function renderType(type: protobuf.Type): string[] {
  const lines = [`### ${type.name}`, ''];
  if (type.comment) lines.push(type.comment, '');
  if (type.fieldsArray.length === 0) {
    lines.push('No fields.', '');
  } else {
    lines.push('| Field | Number | Type | Rules |', '| --- | --- | --- | --- |');
    for (const field of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
      const label = field.repeated ? 'repeated ' : '';
      const oneof = field.partOf === null ? '' : ` (oneof \`${field.partOf.name}\`)`;
      const comment = (field.comment ?? '').replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
      lines.push(
        `| \`${field.name}\` | ${field.id} | ${label}\`${field.type}\`${oneof} | ${comment} |`,
      );
    }
    lines.push('');
  }
  for (const inner of type.nestedArray) {
    if (inner instanceof protobuf.Enum) lines.push(...renderEnum(inner, '####', type.name));
  }
  return lines;
}

function renderEnum(each: protobuf.Enum, heading: string, parent?: string): string[] {
  const name = parent === undefined ? each.name : `${parent}.${each.name}`;
  const lines = [`${heading} ${name}`, ''];
  if (each.comment) lines.push(each.comment, '');
  lines.push('| Value | Number |', '| --- | --- |');
  for (const [value, number] of Object.entries(each.values))
    lines.push(`| \`${value}\` | ${number} |`);
  lines.push('');
  return lines;
}

/** GitHub's anchor of a heading that is just a name. */
function anchor(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9_-]/g, '');
}
