import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { buildTestApp, type TestApp } from '../support/app.js'

describe('operations routes and docs (unauthenticated)', () => {
  let testApp: TestApp
  beforeAll(async () => { testApp = await buildTestApp() })
  afterAll(async () => { await testApp.close() })

  it('GET /healthz 200', async () => {
    const response = await testApp.app.inject({ url: '/healthz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ok' })
  })

  it('GET /readyz 200 when ready', async () => {
    const response = await testApp.app.inject({ url: '/readyz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ status: 'ready', checks: { store: { kind: 'redis', state: 'up' } } })
  })

  it('GET /readyz 503 when the broker has not started', async () => {
    const notStarted = await buildTestApp({ store: 'memory', overrides: { startBroker: false } })
    try {
      const response = await notStarted.app.inject({ url: '/readyz' })
      expect(response.statusCode).toBe(503)
      expect(response.json()).toMatchObject({ status: 'not_ready' })
    } finally {
      await notStarted.close()
    }
  })

  it('GET /metrics 200 in the Prometheus text format', async () => {
    const response = await testApp.app.inject({ url: '/metrics' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain/)
    expect(response.body).toMatch(/^# HELP /m)
  })

  it('GET /docs 200: the Swagger UI', async () => {
    const response = await testApp.app.inject({ url: '/docs' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/html/)
    expect(response.body).toContain('swagger')
  })

  it('GET /docs/json and /docs/yaml serve the same document as the checked-in openapi.yaml', async () => {
    const checkedIn = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as { paths: Record<string, unknown> }
    const json = await testApp.app.inject({ url: '/docs/json' })
    expect(json.statusCode).toBe(200)
    const served = json.json<{ openapi: string, paths: Record<string, unknown>, components: { securitySchemes: Record<string, unknown> } }>()
    expect(served.openapi).toBe('3.1.0')
    expect(served.paths).toEqual(checkedIn.paths)
    expect(served.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
    const yaml = await testApp.app.inject({ url: '/docs/yaml' })
    expect(yaml.statusCode).toBe(200)
    expect((parse(yaml.body) as { paths: unknown }).paths).toEqual(checkedIn.paths)
  })
})

describe('openapi.yaml is complete', () => {
  const spec = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as {
    paths: Record<string, Record<string, { security?: unknown, responses: Record<string, { content?: Record<string, unknown> }> }>>
  }
  const expected: Record<string, string[]> = {
    'get /v1/credentials/{id}/token': ['200', '400', '401', '403', '404', '409', '422', '429', '502', '503'],
    'post /v1/credentials/{id}/token/rejections': ['200', '400', '401', '403', '404', '409', '413', '415', '429', '502', '503'],
    'post /v1/credentials/{id}/user-sessions': ['200', '400', '401', '403', '404', '409', '413', '415', '422', '429', '502', '503'],
    'post /v1/credentials/{id}/signatures': ['200', '400', '401', '403', '404', '409', '413', '415', '429', '502', '503'],
    'post /v1/credentials/{id}/webhook-verifications': ['200', '400', '401', '403', '404', '409', '413', '415', '429', '503'],
    'get /v1/credentials': ['200', '401', '429', '503'],
    'get /v1/admin/credentials': ['200', '401', '403', '429', '503'],
    'post /v1/admin/credentials/{id}/refresh': ['200', '400', '401', '403', '404', '409', '413', '415', '429', '502', '503'],
    'get /healthz': ['200'],
    'get /readyz': ['200', '503'],
    'get /metrics': ['200']
  }

  it.each(Object.entries(expected))('%s documents every status it answers', (route, statuses) => {
    const [method, path] = route.split(' ') as [string, string]
    const operation = spec.paths[path]?.[method]
    expect(Object.keys(operation?.responses ?? {})).toEqual(statuses)
    if (path.startsWith('/v1/')) {
      expect(operation?.security).toEqual([{ bearer: [] }])
      for (const status of statuses.filter(s => s !== '200')) {
        expect(Object.keys(operation?.responses[status]?.content ?? {}), `${route} ${status}`).toEqual(['application/problem+json'])
      }
    }
  })
})
