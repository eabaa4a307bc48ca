/** Injection token of the `SimulatorOptions` given to `SimulatorModule.forRoot` / `forRootAsync`. */
export const SIMULATOR_OPTIONS = Symbol('SIMULATOR_OPTIONS');
