import { RECORD_COLUMNS, type RunRecord } from './run-record';

/** RFC 4180 CSV with a header row; the delay sketches stay in the JSON export. */
export function toCsv(records: readonly RunRecord[]): string {
  const rows = records.map((record) => RECORD_COLUMNS.map((column) => csvField(record[column])).join(','));
  return [RECORD_COLUMNS.join(','), ...rows].join('\r\n') + '\r\n';
}

export function toJson(records: readonly RunRecord[]): string {
  return JSON.stringify(records, null, 2);
}

function csvField(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
