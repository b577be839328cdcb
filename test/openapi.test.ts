import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { generateOpenApiYaml } from '../src/openapi.js'

describe('openapi.yaml', () => {
  it('matches what the route schemas generate (run `npm run openapi` after changing a route)', async () => {
    const checkedIn = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')
    expect(checkedIn).toBe(await generateOpenApiYaml())
  })

  it('documents every route with its error statuses and the bearer scheme', async () => {
    const spec = parse(await generateOpenApiYaml()) as { paths: Record<string, Record<string, { responses: Record<string, unknown>, security?: unknown }>>, components: { securitySchemes: Record<string, unknown> } }
    expect(Object.keys(spec.paths).sort()).toEqual([
      '/healthz', '/metrics', '/readyz',
      '/v1/admin/credentials', '/v1/admin/credentials/{id}/refresh',
      '/v1/credentials', '/v1/credentials/{id}/proxy/{path}', '/v1/credentials/{id}/signatures', '/v1/credentials/{id}/token',
      '/v1/credentials/{id}/token/rejections',
      '/v1/credentials/{id}/user-sessions', '/v1/credentials/{id}/webhook-verifications'
    ])
    expect(Object.keys(spec.paths['/v1/credentials/{id}/token']?.get?.responses ?? {})).toEqual(['200', '400', '401', '403', '404', '409', '422', '429', '502', '503'])
    expect(spec.paths['/v1/credentials/{id}/token']?.get?.security).toEqual([{ bearer: [] }])
    expect(Object.keys(spec.paths['/v1/credentials/{id}/proxy/{path}'] ?? {}).sort()).toEqual(['delete', 'get', 'head', 'patch', 'post', 'put'])
    expect(Object.keys(spec.paths['/v1/credentials/{id}/proxy/{path}']?.post?.responses ?? {})).toEqual(['400', '401', '403', '404', '409', '413', '429', '502', '503', '504', 'default'])
    expect(spec.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
  })
})
