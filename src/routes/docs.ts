/**
 * What the OpenAPI document says beyond the route schemas: operation ids, security, response headers and
 * examples. A route gets all of it from one helper, `operation()`, spread into its `schema`:
 *
 *   schema: { ...operation({ id: 'getToken', summary, tag: 'tokens', access: 'caller', answers: { 200: { example } } }), params, response }
 *
 * The zod transform (fastify-type-provider-zod) keeps only each response's schema; `documentTransform`
 * wraps it and adds the headers and examples back, plus the headers every answer of that access carries.
 */
import type { FastifySchema } from 'fastify'
import type { SwaggerOptions } from '@fastify/swagger'
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod'
import { problemMediaType } from './schemas.js'

declare module 'fastify' {
  interface FastifySchema {
    /** OpenAPI-only documentation of the route's answers; read by documentTransform, never by Fastify. */
    openapiDocs?: OperationDocs
  }
}

/** Response headers as the broker sends them, as OpenAPI header schemas. */
export const responseHeaders = {
  'x-request-id': { type: 'string', description: 'The id of this request, as in the broker\'s log and audit lines and a problem\'s `request_id`. Sent on every answer.' },
  'cache-control': { type: 'string', enum: ['no-store'], description: 'Tokens, signatures, problems and health answers must not be cached.' },
  pragma: { type: 'string', enum: ['no-cache'], description: 'For HTTP/1.0 caches, as RFC 6749 asks of token answers.' },
  'retry-after': { type: 'integer', minimum: 1, description: 'Seconds after which a retry may succeed. Always on 429; on 502 and 503 when the broker knows when the provider, the refresh or the secret source may answer again.' },
  'x-ratelimit-limit': { type: 'integer', minimum: 1, description: 'Requests this caller may make per minute (RATE_LIMIT_PER_MINUTE), counted across replicas. Sent once the caller is authenticated: not on a 401, nor on a 403 from an admin-only route.' },
  'x-ratelimit-remaining': { type: 'integer', minimum: 0, description: 'Requests this caller has left in the current minute.' },
  'x-ratelimit-reset': { type: 'integer', minimum: 0, description: 'Seconds until the current window ends and the count starts again.' }
} as const

export type ResponseHeader = keyof typeof responseHeaders

/** Who may call an operation: no one needs credentials (`open`), a caller's bearer (`caller`), or an admin caller's (`admin`). */
export type Access = 'open' | 'caller' | 'admin'

export interface AnswerDoc {
  description?: string
  /** One example answer, or several named ones. */
  example?: unknown
  examples?: Record<string, { summary: string, value: unknown }>
  /** Headers this answer carries besides those of every answer (x-request-id, the rate limit on /v1). */
  headers?: readonly ResponseHeader[]
  /** For answers without a response schema in the route (not JSON, e.g. /metrics): their media type and JSON schema. */
  mediaType?: string
  schema?: Record<string, unknown>
}

export interface OperationDocs {
  access: Access
  answers: Record<number, AnswerDoc>
  /** An example request body (routes with a body). */
  requestExample?: unknown
}

export interface OperationSpec {
  /** camelCase, unique in the document; clients generate method names from it. */
  id: string
  summary: string
  tag: 'tokens' | 'signing' | 'proxy' | 'webhooks' | 'admin' | 'operations'
  access: Access
  description?: string
  answers?: Record<number, AnswerDoc>
  requestExample?: unknown
}

/** The OpenAPI part of a route's schema: spread it into `schema` next to params, body and response. */
export function operation (spec: OperationSpec): Pick<FastifySchema, 'operationId' | 'summary' | 'tags' | 'security' | 'description' | 'openapiDocs'> {
  return {
    operationId: spec.id,
    summary: spec.summary,
    tags: [spec.tag],
    ...(spec.description === undefined ? {} : { description: spec.description }),
    // An empty list says "no authentication" explicitly (health, readiness, metrics, docs).
    security: spec.access === 'open' ? [] : [{ bearer: [] }],
    openapiDocs: { access: spec.access, answers: spec.answers ?? {}, requestExample: spec.requestExample }
  }
}

/** Headers every answer of this status and access carries (src/app.ts, src/problem.ts, src/auth/rate-limit.ts). */
function commonHeaders (access: Access, status: number, problem: boolean): ResponseHeader[] {
  const headers: ResponseHeader[] = ['x-request-id']
  if (problem) headers.push('cache-control')
  // The rate limit counts after authentication (routes/v1.ts), and after the admin check on admin routes.
  const counted = access === 'caller' ? status !== 401 : access === 'admin' && status !== 401 && status !== 403
  if (counted) headers.push('x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset')
  if (problem && [429, 502, 503].includes(status)) headers.push('retry-after')
  return headers
}

type JsonObject = Record<string, unknown>
interface ContentResponse { description?: string, headers?: JsonObject, content: Record<string, JsonObject | undefined> }

const isContentResponse = (entry: unknown): entry is ContentResponse =>
  typeof entry === 'object' && entry !== null && 'content' in entry && typeof (entry as { content: unknown }).content === 'object'

/**
 * One documented answer: the transformed schema (content form), the examples and headers the route's own
 * entry carries (problems() sets them) and those of `answer`, and the common headers.
 */
function documentAnswer (status: number, transformed: unknown, original: unknown, answer: AnswerDoc, access: Access): ContentResponse {
  const content: Record<string, JsonObject> = {}
  if (isContentResponse(transformed)) {
    for (const [mediaType, media] of Object.entries(transformed.content)) {
      // What the zod transform drops (example, examples) is still on the route's own entry.
      const { schema: _schema, ...extras } = (isContentResponse(original) ? original.content[mediaType] : undefined) ?? {}
      content[mediaType] = { ...media, ...extras }
    }
  } else if (transformed !== undefined) {
    content['application/json'] = { schema: transformed }
  } else if (answer.schema !== undefined) {
    content[answer.mediaType ?? 'application/json'] = { schema: answer.schema }
  }
  for (const media of Object.values(content)) {
    if (answer.example !== undefined) media.example = answer.example
    if (answer.examples !== undefined) media.examples = answer.examples
  }
  const problem = isContentResponse(original) && problemMediaType in original.content
  const names = new Set<ResponseHeader>([...commonHeaders(access, status, problem), ...(answer.headers ?? [])])
  const headers: JsonObject = Object.fromEntries([...names].map(name => [name, responseHeaders[name]]))
  const description = answer.description ?? (isContentResponse(transformed) ? transformed.description : undefined) ?? 'OK'
  return { description, headers, content }
}

type TransformInput = Parameters<typeof jsonSchemaTransform>[0]
type TransformOutput = ReturnType<typeof jsonSchemaTransform>

/**
 * @fastify/swagger-ui's own routes, hidden by it; the page and the document are worth listing (open, no
 * key). Its page is registered as "/docs/" (Fastify answers "/docs" too) and listed as "/docs".
 */
const uiRoutes: Record<string, FastifySchema> = {
  '/docs/': operation({ id: 'getDocs', summary: 'Swagger UI for this document', tag: 'operations', access: 'open', answers: { 200: { description: 'The Swagger UI page', mediaType: 'text/html', schema: { type: 'string' }, example: '<!doctype html>…' } } }),
  '/docs/json': operation({ id: 'getOpenApiJson', summary: 'This OpenAPI document, as JSON', tag: 'operations', access: 'open', answers: { 200: { description: 'The OpenAPI document', schema: { type: 'object' }, example: { openapi: '3.1.0', info: { title: 'credential-broker', version: '1' } } } } }),
  '/docs/yaml': operation({ id: 'getOpenApiYaml', summary: 'This OpenAPI document, as YAML (as openapi.yaml in the repository)', tag: 'operations', access: 'open', answers: { 200: { description: 'The OpenAPI document', mediaType: 'application/x-yaml', schema: { type: 'string' }, example: 'openapi: 3.1.0\ninfo:\n  title: credential-broker\n' } } })
}

/** @fastify/swagger's `transform`: the zod transform, then the answers' headers and examples (see the file comment). */
export function documentTransform (input: TransformInput): TransformOutput {
  const schema = uiRoutes[input.url] ?? input.schema
  const result = { ...jsonSchemaTransform({ ...input, schema }), url: input.url === '/docs/' ? '/docs' : input.url }
  const docs = schema?.openapiDocs
  const transformed = result.schema as (FastifySchema & { hide?: boolean }) | undefined
  if (docs === undefined || transformed === undefined || transformed.hide === true) return result
  const { openapiDocs: _docs, ...rest } = transformed
  const routeResponses = (schema.response ?? {}) as Record<string, unknown>
  const transformedResponses = (transformed.response ?? {}) as Record<string, unknown>
  const statuses = new Set([...Object.keys(routeResponses), ...Object.keys(docs.answers)])
  const response = Object.fromEntries([...statuses].sort().map(status => [status,
    documentAnswer(Number(status), transformedResponses[status], routeResponses[status], docs.answers[Number(status)] ?? {}, docs.access)]))
  // @fastify/swagger turns a body schema's one `examples` entry into the request's media example.
  const body = docs.requestExample !== undefined && typeof rest.body === 'object' && rest.body !== null ? { ...rest.body, examples: [docs.requestExample] } : rest.body
  return { ...result, schema: { ...rest, ...(body === undefined ? {} : { body }), response } }
}

interface OpenApiResponse { headers?: Record<string, JsonObject>, content?: Record<string, { examples?: Record<string, unknown> }> }
type OpenApiPaths = Record<string, Record<string, { responses?: Record<string, OpenApiResponse> }>>

/**
 * @fastify/swagger's `transformObject`: the zod schemas as components, then the headers and the problem
 * examples that every operation repeats moved to `components.headers` and `components.examples` and
 * referenced. The JSON round trip drops shared object identities, which YAML would print as anchors.
 */
export function documentObject (input: Parameters<typeof jsonSchemaTransformObject>[0]): ReturnType<typeof jsonSchemaTransformObject> {
  const document = JSON.parse(JSON.stringify(jsonSchemaTransformObject(input))) as { paths?: OpenApiPaths, components?: Record<string, unknown> }
  const headers: Record<string, unknown> = {}
  const examples: Record<string, unknown> = {}
  for (const operations of Object.values(document.paths ?? {})) {
    for (const response of Object.values(operations).flatMap(operation => Object.values(operation.responses ?? {}))) {
      for (const [name, header] of Object.entries(response.headers ?? {})) {
        headers[name] = { ...header, ...(name === 'x-request-id' ? { required: true } : {}) }
        response.headers![name] = { $ref: `#/components/headers/${name}` }
      }
      for (const media of Object.values(response.content ?? {})) {
        for (const [name, example] of Object.entries(media.examples ?? {})) {
          if (!/^CB_[A-Z_]+$/.test(name)) continue
          examples[name] = example
          media.examples![name] = { $ref: `#/components/examples/${name}` }
        }
      }
    }
  }
  const { openapi, info, servers, tags, paths, components } = document as Record<string, unknown>
  // The order a reader looks for things in: what and where first, the operations, then the parts they refer to.
  return { openapi, info, servers, tags, paths, components: { ...(components as object), headers: sortedByKey(headers), examples: sortedByKey(examples) } } as ReturnType<typeof jsonSchemaTransformObject>
}

const sortedByKey = (record: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)))

/** The options of @fastify/swagger: the document's frame (info, servers, tags, security scheme) and the transforms above. */
export const swaggerOptions: SwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'credential-broker',
      version: '1',
      description: 'Short-lived provider tokens, request signatures and webhook verification for internal services. Errors are application/problem+json (RFC 9457) with a stable `code`.'
    },
    servers: [
      { url: '/', description: 'The broker that serves this document' },
      { url: 'http://credential-broker.credential-broker.svc.cluster.local', description: 'Example: the in-cluster Service of deploy/kubernetes (namespace credential-broker, port 80)' },
      { url: 'http://localhost:8080', description: 'Example: `npm start` on a developer machine' }
    ],
    tags: [
      { name: 'tokens', description: 'Provider tokens' },
      { name: 'signing', description: 'Request signatures (SIR Giving)' },
      { name: 'proxy', description: 'Provider API calls through the broker, the credential injected' },
      { name: 'webhooks', description: 'Webhook signature verification' },
      { name: 'admin', description: 'Operator view (admin callers only)' },
      { name: 'operations', description: 'Health, readiness, metrics and this document; no authentication' }
    ],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key issued to the caller, or a JWT (e.g. a Kubernetes service account token) whose issuer and audience the broker trusts' }
      }
    }
  },
  transform: documentTransform,
  transformObject: documentObject
}
