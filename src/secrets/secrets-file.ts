/**
 * The embedded secret source's file format, `{ "<secret path>": { field: value } }`, parsed in one place:
 * the configuration check at start (one line per problem, exit 78) and the file source's re-reads use it.
 * Problems name the file, the secret path and the field, never a value (JSON.parse's messages quote the
 * text, so they are dropped).
 */
import { z } from 'zod'
import type { SecretData } from '../providers/types.js'

const SecretsFileSchema = z.record(
  z.string().min(1),
  z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(value => String(value)))
)

export type SecretsFileContent = Record<string, SecretData>

/** What is expected at each depth of the file, for a problem found there. */
const expectedAt = [
  'expected a JSON object of secret paths, { "<secret path>": { field: value } }',
  'expected an object of fields, { field: value }',
  'expected a string, number or boolean value'
]

/** The file's entries, or one problem line per thing wrong in it (prefixed by `where`). */
export function parseSecretsFile (text: string, where: string): { entries: SecretsFileContent } | { problems: string[] } {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return { problems: [`${where} is not valid JSON`] }
  }
  const parsed = SecretsFileSchema.safeParse(raw)
  if (parsed.success) return { entries: parsed.data }
  const problems = parsed.error.issues.map(issue => {
    const at = issue.path.length === 0 ? '' : ` at ${issue.path.map(String).join(' → ')}`
    return `${where}${at}: ${expectedAt[Math.min(issue.path.length, expectedAt.length - 1)] ?? ''}`
  })
  return { problems: [...new Set(problems)] }
}
