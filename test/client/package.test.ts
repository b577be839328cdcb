/**
 * The package as a user gets it: `npm pack` in client/ (its prepack builds dist/), the tarball installed
 * offline into an empty folder (it has no dependencies), then imported by plain Node, used against the
 * real broker, and type-checked by tsc as a consumer's code would be.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keys, startClientWorld, type ClientWorld } from './world.js'

const run = promisify(execFile)
const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const clientDir = join(repo, 'client')
/** Without the npm_* variables of an enclosing `npm test`, so the nested npm runs as a user's would. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')))

const consumerTypes = `
import { BrokerError, createBrokerClient, type BrokerClient, type Token, type WebhookVerification } from '@credential-broker/client'

const client: BrokerClient = createBrokerClient({ baseUrl: 'http://127.0.0.1:1', apiKey: 'key' })
const viaFile = createBrokerClient({ baseUrl: new URL('http://127.0.0.1:1'), token: async () => 'jwt' })
const token: Promise<Token> = client.getToken('kivra', { minTtl: 60 })
const expiresAt: Promise<Date> = token.then(t => t.expiresAt)
const response: Promise<Response> = client.fetch('kivra', 'https://api.example/x', { method: 'POST', body: '{}', isRejected: r => r.status === 400 })
const proxied: Promise<Response> = viaFile.proxy('kivra', '/v1/x', { query: { a: 'b' } })
const signed: Promise<Record<string, string>> = client.sign('sir', { method: 'GET', path: '/v1/partner/pools', body: new Uint8Array() })
const verdict: Promise<WebhookVerification> = client.verifyWebhook('sir', { headers: { 'x-sir-signature': 'sha256=00' }, body: '{}' })
const err = new BrokerError('message', { code: 'CB_CLIENT_TIMEOUT', status: 0 })
const fields: [string, number, number | undefined, string | undefined, boolean] = [err.code, err.status, err.retryAfter, err.requestId, err.clientSide]
// @ts-expect-error a credential id is a string
void client.getToken(42)
// @ts-expect-error an API key and a token function together
createBrokerClient({ baseUrl: 'http://x', apiKey: 'key', token: () => 't' })
void [expiresAt, response, proxied, signed, verdict, fields]
`

describe('@credential-broker/client as a packed tarball', () => {
  let world: ClientWorld
  let dir: string
  beforeAll(async () => {
    world = await startClientWorld()
    dir = await mkdtemp(join(tmpdir(), 'cb-client-pack-'))
  })
  afterAll(async () => {
    await world.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('npm pack → npm install <tgz> (offline) in an empty folder → import works, it gets a token from the broker, and the types resolve', async () => {
    await run('npm', ['pack', '--pack-destination', dir], { cwd: clientDir, env: cleanEnv, timeout: 120_000 })
    const tarball = (await readdir(dir)).find(name => name.endsWith('.tgz'))
    expect(tarball).toBe('credential-broker-client-0.1.0.tgz')
    const tarballPath = join(dir, tarball as string)
    const { stdout: listing } = await run('tar', ['-tzf', tarballPath])
    const files = listing.trim().split('\n').sort()
    expect(files).toEqual(expect.arrayContaining(['package/package.json', 'package/README.md', 'package/dist/index.js', 'package/dist/index.d.ts']))
    expect(files.filter(file => !/^package\/(package\.json|README\.md|dist\/[a-z-]+\.(js|d\.ts))$/.test(file))).toEqual([])

    const app = join(dir, 'app')
    await mkdir(app)
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarballPath], { cwd: app, env: cleanEnv, timeout: 120_000 })
    // Zero runtime dependencies: the package is all that was installed.
    expect((await readdir(join(app, 'node_modules'))).filter(name => !name.startsWith('.'))).toEqual(['@credential-broker'])
    const installed = JSON.parse(await readFile(join(app, 'node_modules/@credential-broker/client/package.json'), 'utf8')) as Record<string, unknown>
    expect(installed.dependencies).toBeUndefined()

    const { stdout: exported } = await run(process.execPath, ['-e', "import('@credential-broker/client').then(m => console.log(Object.keys(m).sort().join(',')))"], { cwd: app })
    expect(exported.trim().split(',')).toEqual(expect.arrayContaining(['BrokerError', 'createBrokerClient']))

    await writeFile(join(app, 'use.mjs'), [
      "import { createBrokerClient } from '@credential-broker/client'",
      'const client = createBrokerClient({ baseUrl: process.env.BROKER_URL, apiKey: process.env.BROKER_KEY })',
      "const token = await client.getToken('kivra', { minTtl: 120 })",
      'console.log(JSON.stringify({ accessToken: token.accessToken, isDate: token.expiresAt instanceof Date, expiresIn: token.expiresIn }))'
    ].join('\n'))
    const { stdout: used } = await run(process.execPath, ['use.mjs'], { cwd: app, env: { ...cleanEnv, BROKER_URL: world.baseUrl, BROKER_KEY: keys.service }, timeout: 30_000 })
    const answer = JSON.parse(used) as { accessToken: string, isDate: boolean, expiresIn: number }
    expect(world.kivra.isTokenValid(answer.accessToken)).toBe(true)
    expect(answer.isDate).toBe(true)
    expect(answer.expiresIn).toBeGreaterThanOrEqual(120)

    await writeFile(join(app, 'consumer.ts'), consumerTypes)
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2023'],
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        types: ['node'],
        typeRoots: [join(repo, 'node_modules/@types')]
      },
      files: ['consumer.ts']
    }))
    const tsc = join(repo, 'node_modules/typescript/bin/tsc')
    const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: app, timeout: 120_000 }).then(() => 'ok', (err: { stdout?: string }) => err.stdout ?? String(err))
    expect(checked).toBe('ok')
  }, 300_000)
})
