import { readFileSync } from 'node:fs'
import SwaggerParser from '@apidevtools/swagger-parser'
import type { LightMyRequestResponse } from 'fastify'
import type { OpenAPIV3_1 as OpenApi } from 'openapi-types'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { generateOpenApiYaml } from '../src/openapi.js'
import { bearer, keys, startApiWorld, type ApiWorld } from './api/world.js'

const checkedIn = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')
const spec = parse(checkedIn) as OpenApi.Document
const methods = ['get', 'post', 'put', 'patch', 'delete'] as const

/** Every operation of the document, with its path and method. */
function operations (): Array<{ path: string, method: string, operation: OpenApi.OperationObject }> {
  return Object.entries(spec.paths ?? {}).flatMap(([path, item]) =>
    methods.flatMap(method => item?.[method] === undefined ? [] : [{ path, method, operation: item[method] as OpenApi.OperationObject }]))
}

const responsesOf = (operation: OpenApi.OperationObject): Record<string, OpenApi.ResponseObject> => operation.responses as Record<string, OpenApi.ResponseObject>

/** Header names a documented response lists (by $ref to components.headers or inline). */
const documentedHeaders = (response: OpenApi.ResponseObject): string[] => Object.keys(response.headers ?? {})

/** The problem codes a documented problem response gives examples of. */
const exampleCodes = (response: OpenApi.ResponseObject): string[] => Object.keys(response.content?.['application/problem+json']?.examples ?? {})

describe('openapi.yaml', () => {
  it('matches what the route schemas generate (run `npm run openapi` after changing a route)', async () => {
    expect(checkedIn).toBe(await generateOpenApiYaml())
  })

  it('is a valid OpenAPI 3.1 document (swagger-parser: the 3.1 schema and every $ref)', async () => {
    // validate() dereferences in place: give it a copy.
    await expect(SwaggerParser.validate(structuredClone(spec))).resolves.toBeDefined()
  })

  it('the validator refuses a broken document (a dangling $ref, an answer without its description)', async () => {
    const dangling = structuredClone(spec)
    const token = dangling.paths?.['/v1/credentials/{id}/token']?.get as OpenApi.OperationObject
    responsesOf(token)['200'] = { $ref: '#/components/responses/Nowhere' } as unknown as OpenApi.ResponseObject
    await expect(SwaggerParser.validate(dangling)).rejects.toThrow(/Nowhere|resolve/)
    const undescribed = structuredClone(spec)
    delete (responsesOf(undescribed.paths?.['/healthz']?.get as OpenApi.OperationObject)['200'] as Partial<OpenApi.ResponseObject>).description
    await expect(SwaggerParser.validate(undescribed)).rejects.toThrow(/description/)
  })

  it('names a relative server first, then documented examples', () => {
    expect(spec.servers?.[0]).toMatchObject({ url: '/' })
    expect(spec.servers?.slice(1).map(server => server.url)).toEqual(expect.arrayContaining([expect.stringMatching(/^https?:\/\/[a-z]/)]))
    for (const server of spec.servers ?? []) expect(server.description).toEqual(expect.any(String))
  })

  it('gives every operation a unique camelCase operationId, and security [] on open routes, the bearer scheme on /v1', () => {
    const ids = operations().map(({ operation }) => operation.operationId)
    expect(ids.every(id => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id))).toBe(true)
    expect(new Set(ids).size).toBe(ids.length)
    for (const { path, operation } of operations()) {
      expect({ path, security: operation.security }).toEqual({ path, security: path.startsWith('/v1/') ? [{ bearer: [] }] : [] })
    }
    expect(spec.components?.securitySchemes?.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
  })

  it('gives every answer and request body an example, and every answer the request id header; every problem status an example of each of its codes', () => {
    for (const { path, method, operation } of operations()) {
      for (const [status, response] of Object.entries(responsesOf(operation))) {
        const where = `${method.toUpperCase()} ${path} ${status}`
        const media = Object.values(response.content ?? {})
        expect(media.length, where).toBeGreaterThan(0)
        for (const entry of media) expect(entry.example !== undefined || Object.keys(entry.examples ?? {}).length > 0, where).toBe(true)
        expect(documentedHeaders(response), where).toContain('x-request-id')
        const body = (operation.requestBody as OpenApi.RequestBodyObject | undefined)?.content['application/json']
        if (body !== undefined) expect(body.example, `${where} request body`).toBeDefined()
        if (Number(status) >= 400 && response.content?.['application/problem+json'] !== undefined) {
          expect(exampleCodes(response).length, where).toBeGreaterThan(0)
          expect(response.description, where).toContain(`\`${exampleCodes(response)[0]}\``)
        }
      }
    }
    // The sample Swagger UI would make from the bare schema bounds (-9007199254740991) is never what it shows.
    const token = responsesOf(spec.paths?.['/v1/credentials/{id}/token']?.get as OpenApi.OperationObject)['200']
    expect(token?.content?.['application/json']?.example).toMatchObject({ expires_in: expect.any(Number), token_type: 'Bearer' })
    expect(checkedIn).not.toContain('-9007199254740991')
  })

  it('documents Retry-After on the 429, 502 and 503 problems, and the rate limit headers on /v1 answers after authentication', () => {
    const token = responsesOf(spec.paths?.['/v1/credentials/{id}/token']?.get as OpenApi.OperationObject)
    for (const status of ['429', '502', '503']) expect(documentedHeaders(token[status] as OpenApi.ResponseObject), status).toContain('retry-after')
    expect(documentedHeaders(token['200'] as OpenApi.ResponseObject)).toEqual(expect.arrayContaining(['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'cache-control']))
    expect(documentedHeaders(token['401'] as OpenApi.ResponseObject)).not.toContain('x-ratelimit-limit')
    expect(documentedHeaders(responsesOf(spec.paths?.['/healthz']?.get as OpenApi.OperationObject)['200'] as OpenApi.ResponseObject)).not.toContain('x-ratelimit-limit')
    expect(Object.keys(spec.components?.headers ?? {})).toEqual(expect.arrayContaining(['retry-after', 'x-request-id', 'cache-control']))
  })
})

/** Method and path of every route the app registers, from Fastify's route tree (HEAD twins left out). */
function registeredRoutes (tree: string): string[] {
  const stack: string[] = []
  return tree.split('\n').flatMap(line => {
    const match = /^([│ ]*)[├└]── (\S+) \(([^)]+)\)$/.exec(line)
    if (match === null) return []
    const depth = (match[1] as string).length / 4
    stack.length = depth
    stack.push(match[2] as string)
    const path = stack.join('')
    return (match[3] as string).split(', ').filter(method => method !== 'HEAD').map(method => `${method} ${path}`)
  })
}

/** @fastify/swagger-ui's static files: not operations; "/docs/" is the page listed as "/docs". */
const uiAssets = ['GET /docs/', 'GET /docs/static/index.html', 'GET /docs/static/swagger-initializer.js', 'GET /docs/*']

describe('the running app and the document', () => {
  let world: ApiWorld
  // Low enough to reach 429 in a few requests; each caller below stays under it otherwise.
  beforeAll(async () => { world = await startApiWorld({ env: { RATE_LIMIT_PER_MINUTE: '8' } }) })
  afterAll(async () => { await world.close() })

  it('documents every route the app registers, and no other', () => {
    const documented = operations().map(({ path, method }) => `${method.toUpperCase()} ${path.replaceAll(/\{(\w+)\}/g, ':$1')}`)
    const registered = registeredRoutes(world.testApp.app.printRoutes({ commonPrefix: false })).filter(route => !uiAssets.includes(route))
    expect(registered.length).toBeGreaterThan(10)
    // printRoutes folds a wildcard route into its parent's prefix ("/v1/credentials*" for the proxy's
    // "/v1/credentials/:id/proxy/*"): such an entry stands for a documented ":path" route under that prefix
    // that the router really serves.
    const wildcard = (route: string): string | undefined => documented.find(entry => route.endsWith('*') && entry.startsWith(route.slice(0, -1)) && entry.endsWith('/:path'))
    expect(registered.map(route => wildcard(route) ?? route).sort()).toEqual(documented.sort())
    for (const entry of documented.filter(route => route.endsWith('/:path'))) {
      const [method, url] = entry.split(' ') as [string, string]
      expect(world.testApp.app.hasRoute({ method: method as 'GET', url: url.replace(/:path$/, '*') }), entry).toBe(true)
    }
  })

  it('serves the same document at /docs/json', async () => {
    const served = await world.testApp.app.inject('/docs/json')
    expect(served.json()).toEqual(spec)
  })

  /** A request that makes the token route answer each status (the rate limit counts per caller: 8 a minute here). */
  const tokenScenarios: Record<string, () => Promise<LightMyRequestResponse>> = {
    200: async () => await token('kivra'),
    400: async () => await token('kivra', '?min_ttl=soon'),
    401: async () => await token('kivra', '', {}),
    403: async () => await token('kivra', '', bearer(keys.other)),
    404: async () => await token('no-such-credential'),
    409: async () => await token('sir'),
    422: async () => await token('oauth2-short', '?min_ttl=200'),
    429: async () => {
      // A fixed window may roll over between two requests; within 20 the limit of 8 is reached either way.
      for (let attempt = 0; ; attempt += 1) {
        const response = await token('kigo-other', '', bearer(keys.other))
        if (response.statusCode === 429 || attempt === 20) return response
      }
    },
    502: async () => await token('kivra-rejecting'),
    503: async () => await token('kigo-down')
  }
  const token = async (id: string, query = '', headers: Record<string, string> = bearer(keys.service)): Promise<LightMyRequestResponse> =>
    await world.testApp.app.inject({ url: `/v1/credentials/${id}/token${query}`, headers })

  it('answers each documented status of the token route, with the headers and a problem code the document gives for it', async () => {
    const documented = responsesOf(spec.paths?.['/v1/credentials/{id}/token']?.get as OpenApi.OperationObject)
    expect(Object.keys(documented).sort()).toEqual(Object.keys(tokenScenarios).sort())
    for (const [status, response] of Object.entries(documented)) {
      const answer = await (tokenScenarios[status] as () => Promise<LightMyRequestResponse>)()
      expect({ status, answered: answer.statusCode }).toEqual({ status, answered: Number(status) })
      for (const header of documentedHeaders(response)) expect(answer.headers[header], `${status} ${header}`).toBeDefined()
      if (Number(status) >= 400) expect(exampleCodes(response), status).toContain(answer.json<{ code: string }>().code)
    }
  })
})

describe('the 200 answer of every operation', () => {
  let world: ApiWorld
  beforeAll(async () => { world = await startApiWorld() })
  afterAll(async () => { await world.close() })

  it('sends the headers each operation documents for it', async () => {
    const requests: Record<string, { url: string, method?: 'GET' | 'POST', key?: string }> = {
      getLiveness: { url: '/healthz' },
      getReadiness: { url: '/readyz' },
      getMetrics: { url: '/metrics' },
      getDocs: { url: '/docs' },
      getOpenApiJson: { url: '/docs/json' },
      getOpenApiYaml: { url: '/docs/yaml' },
      getToken: { url: '/v1/credentials/klavi/token' },
      // Bodies: the document's own request examples, so they pass the route's validation too.
      createUserSession: { url: '/v1/credentials/kigo/user-sessions', method: 'POST' },
      reportTokenRejection: { url: '/v1/credentials/kivra/token/rejections', method: 'POST' },
      signRequest: { url: '/v1/credentials/sir/signatures', method: 'POST' },
      verifyWebhook: { url: '/v1/credentials/kivra/webhook-verifications', method: 'POST' },
      listCredentials: { url: '/v1/credentials', key: keys.frontend },
      listAllCredentials: { url: '/v1/admin/credentials', key: keys.admin },
      refreshCredential: { url: '/v1/admin/credentials/klavi/refresh', method: 'POST', key: keys.admin }
    }
    // The proxy's operations document the upstream's answer (default), not a 200 of the broker's own.
    const withOwn200 = operations().filter(({ operation }) => responsesOf(operation)['200'] !== undefined)
    expect(operations().filter(({ operation }) => responsesOf(operation)['200'] === undefined).map(({ path }) => path)).toEqual(Array(5).fill('/v1/credentials/{id}/proxy/{path}'))
    const ids = withOwn200.map(({ operation }) => operation.operationId as string)
    expect(Object.keys(requests).sort()).toEqual(ids.sort())
    for (const { operation } of withOwn200) {
      const request = requests[operation.operationId as string] as (typeof requests)[string]
      const headers = request.url.startsWith('/v1/') ? bearer(request.key ?? keys.service) : {}
      const payload = (operation.requestBody as OpenApi.RequestBodyObject | undefined)?.content['application/json']?.example as Record<string, unknown> | undefined
      const answer = await world.testApp.app.inject({ url: request.url, method: request.method ?? 'GET', headers, ...(payload === undefined ? {} : { payload }) })
      expect({ id: operation.operationId, status: answer.statusCode }).toEqual({ id: operation.operationId, status: 200 })
      for (const header of documentedHeaders(responsesOf(operation)['200'] as OpenApi.ResponseObject)) {
        expect(answer.headers[header], `${operation.operationId as string} ${header}`).toBeDefined()
      }
    }
  })
})
