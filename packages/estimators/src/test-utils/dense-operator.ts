// The dense test operators moved to @bilevel/linalg with the linear solvers; the estimators' tests share them.
export * from '../../../linalg/src/test-utils/dense-operator';
