/**
 * containerd's list filters, the part of its filter language snapshot listings use:
 *
 *   FILTER   := SELECTOR (',' SELECTOR)*         every selector must match
 *   SELECTOR := FIELD | FIELD OP VALUE           OP: '==', '!=', '~=' (regular expression)
 *   FIELD    := name | parent | kind | labels.KEY   (KEY may be "quoted")
 *   VALUE    := a "quoted" string or text up to the next ','
 *
 * A snapshot is listed when any of the filters matches (none: every snapshot). A field
 * alone asks that it be present (non-empty). Malformed filters are InvalidArgument.
 */
import { snapshotError } from './store';

export interface Filterable {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

interface Selector {
  field: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
  re?: RegExp;
}

const bad = (filter: string, why: string): Error => snapshotError.argument(`invalid filter ${JSON.stringify(filter)}: ${why}`);

function readQuoted(s: string, i: number, filter: string): [string, number] {
  let out = '';
  for (i++; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) out += s[++i];
    else if (s[i] === '"') return [out, i + 1];
    else out += s[i];
  }
  throw bad(filter, 'unterminated quote');
}

function parseFilter(filter: string): Selector[] {
  const sels: Selector[] = [];
  let i = 0;
  while (i < filter.length) {
    const field: string[] = [];
    for (;;) {
      let part: string;
      if (filter[i] === '"') [part, i] = readQuoted(filter, i, filter);
      else {
        const m = /^[A-Za-z0-9_/-]+/.exec(filter.slice(i));
        if (!m) throw bad(filter, `field expected at ${i}`);
        part = m[0];
        i += part.length;
      }
      field.push(part);
      if (filter[i] !== '.') break;
      i++;
    }
    if (!['name', 'parent', 'kind', 'labels'].includes(field[0]) || (field[0] === 'labels') !== (field.length === 2) || field.length > 2) {
      throw bad(filter, `unknown field ${field.join('.')}`);
    }
    const sel: Selector = { field };
    const op = filter.slice(i, i + 2);
    if (op === '==' || op === '!=' || op === '~=') {
      sel.op = op;
      i += 2;
      if (filter[i] === '"') [sel.value, i] = readQuoted(filter, i, filter);
      else {
        const end = filter.indexOf(',', i);
        sel.value = filter.slice(i, end < 0 ? filter.length : end);
        i = end < 0 ? filter.length : end;
      }
      if (op === '~=') {
        try {
          sel.re = new RegExp(sel.value);
        } catch {
          throw bad(filter, `bad regular expression ${sel.value}`);
        }
      }
    }
    sels.push(sel);
    if (i < filter.length) {
      if (filter[i] !== ',') throw bad(filter, `',' expected at ${i}`);
      i++;
      if (i === filter.length) throw bad(filter, "a selector expected after ','");
    }
  }
  return sels;
}

function fieldValue(s: Filterable, field: string[]): string | undefined {
  if (field[0] === 'labels') return s.labels[field[1]];
  if (field[0] === 'kind') return s.kind.toLowerCase();
  const v = s[field[0] as 'name' | 'parent'];
  return v === '' ? undefined : v;
}

function matches(s: Filterable, sel: Selector): boolean {
  const v = fieldValue(s, sel.field);
  switch (sel.op) {
    case undefined: return v !== undefined;
    case '==': return v === (sel.field[0] === 'kind' ? sel.value?.toLowerCase() : sel.value);
    case '!=': return v !== (sel.field[0] === 'kind' ? sel.value?.toLowerCase() : sel.value);
    case '~=': return v !== undefined && sel.re!.test(v);
  }
}

/** A predicate for `filters` (any of them); throws InvalidArgument for a malformed one. */
export function compileFilters(filters: string[]): (s: Filterable) => boolean {
  const parsed = filters.filter((f) => f.trim() !== '').map(parseFilter);
  if (parsed.length === 0) return () => true;
  return (s) => parsed.some((sels) => sels.every((sel) => matches(s, sel)));
}
