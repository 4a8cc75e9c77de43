export * from './linear-solve';
export * from './flat-vectors';
export * from './conjugate-gradient';
export * from './neumann';
export * from './fixed-point';
export * from './dense';
