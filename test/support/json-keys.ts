/**
 * The top-level keys that appear more than once in a JSON object's text. JSON.parse silently keeps the
 * last of two equal keys; a log store such as Elasticsearch rejects the whole line.
 */
export function duplicateKeys (line: string): string[] {
  const seen = new Set<string>()
  const duplicates: string[] = []
  let depth = 0
  for (let at = 0; at < line.length; at++) {
    const char = line[at]
    if (char === '{' || char === '[') depth++
    else if (char === '}' || char === ']') depth--
    else if (char === '"') {
      let end = at + 1
      while (line[end] !== '"') end += line[end] === '\\' ? 2 : 1
      // A key: a string at depth 1 followed by a colon.
      if (depth === 1 && line[end + 1] === ':') {
        const key = line.slice(at + 1, end)
        if (seen.has(key)) duplicates.push(key)
        seen.add(key)
      }
      at = end
    }
  }
  return duplicates
}
