import { Pipe, type PipeTransform } from '@angular/core';

/** A duration in ms for reading: finer resolution for the small figures transport delays usually are. */
@Pipe({ name: 'ms' })
export class Milliseconds implements PipeTransform {
  transform(value: number | null | undefined): string {
    return formatMs(value);
  }
}

export function formatMs(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  const digits = Math.abs(value) < 10 ? 2 : Math.abs(value) < 100 ? 1 : 0;
  return value.toFixed(digits);
}
