import { Module } from '@nestjs/common';
import { ConfigurableModuleClass } from './simulator.module-definition';

/** `SimulatorModule.forRoot(options)` / `forRootAsync({ useFactory, inject })` provide `SimulatorService`. */
@Module({})
export class SimulatorModule extends ConfigurableModuleClass {}
