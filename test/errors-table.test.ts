import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { errorTable } from '../src/errors.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const self = fileURLToPath(import.meta.url)

function filesUnder (dir: string, suffixes: string[]): string[] {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : filesUnder(path, suffixes)
    return suffixes.some(suffix => name.endsWith(suffix)) ? [path] : []
  })
}

const read = (path: string): string => readFileSync(path, 'utf8')
const sources = filesUnder(join(root, 'src'), ['.ts']).filter(path => !path.endsWith(join('src', 'errors.ts'))).map(path => ({ path, text: read(path) }))
const tests = filesUnder(join(root, 'test'), ['.ts']).filter(path => path !== self).map(path => ({ path, text: read(path) }))
const codes = Object.keys(errorTable)

describe('the error table is true', () => {
  it.each(codes)('%s is raised by some source path', code => {
    expect(sources.filter(file => file.text.includes(`'${code}'`)).map(file => relative(root, file.path))).not.toEqual([])
  })

  it.each(codes)('%s is answered in some test', code => {
    expect(tests.filter(file => file.text.includes(code)).map(file => relative(root, file.path))).not.toEqual([])
  })

  // The client library (client/) has codes of its own (CB_CLIENT_*), for failures on the caller's side.
  it('the README, the OpenAPI document and docs/ name no code the table lacks', () => {
    const documents = [join(root, 'README.md'), join(root, 'openapi.yaml'), ...filesUnder(join(root, 'docs'), ['.md'])]
    const unknown = documents.flatMap(path => [...read(path).matchAll(/\bCB_[A-Z_]+\b/g)]
      .map(match => match[0])
      .filter(code => !codes.includes(code))
      .map(code => `${relative(root, path)}: ${code}`))
    expect([...new Set(unknown)]).toEqual([])
  })
})
