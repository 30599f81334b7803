//! The request's own errors, before execution, as the GraphQL spec orders them: picking
//! the operation (`GetOperation`) and coercing its variables (`CoerceVariableValues`).
//! async-graphql reports an unknown `operationName` with the name echoed back and no
//! code, and finds a mistyped variable only while executing, as an uncoded field error;
//! both read as internal faults. Here they are request errors: `BAD_USER_INPUT`, no
//! `data`, and 400 on `application/graphql-response+json`. Messages name the variable
//! and the expected type, never the value sent (it may be a password in the wrong place).

use async_graphql::{
    Name, Request, ServerError, ValidationResult, Value, Variables,
    parser::types::{BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Type},
    registry::{MetaType, Registry},
};

use super::code::Code;

/// What one request's checks carry from step to step.
#[derive(Default)]
pub(super) struct Coercion {
    operation_name: Option<String>,
    /// Found while parsing; reported after validation, which comes first in the spec.
    refused: Vec<ServerError>,
}

/// A refusal of the request, naming `field` (the variable, or its input field).
fn bad_input(message: String, field: &str) -> ServerError {
    let mut err = Code::BadUserInput.error(message);
    if let Some(ext) = err.extensions.as_mut() {
        ext.set("field", field);
    }
    err
}

/// The operation the request runs, as `GetOperation` picks it.
fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Result<&'d OperationDefinition, ServerError> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => Ok(&op.node),
        (DocumentOperations::Single(_), Some(_)) => Err(operation_name_unknown()),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get(name)
            .map(|op| &op.node)
            .ok_or_else(operation_name_unknown),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            Ok(&ops.values().next().expect("one operation").node)
        }
        (DocumentOperations::Multiple(_), None) => Err(bad_input(
            "the document has several operations: say which to run in `operationName`".into(),
            "operationName",
        )),
    }
}

fn operation_name_unknown() -> ServerError {
    bad_input(
        "`operationName` names no operation of the document".into(),
        "operationName",
    )
}

/// Why the variables cannot run `op`, one error per variable.
fn check_variables(registry: &Registry, op: &OperationDefinition, variables: &Variables) -> Vec<ServerError> {
    let mut errors = Vec::new();
    for definition in &op.variable_definitions {
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        let ty = &definition.var_type.node;
        let problem = match variables.get(&Name::new(name)) {
            None if definition.default_value.is_some() || ty.nullable => None,
            None => Some((
                format!("is required ({ty}) but was not provided"),
                name.to_owned(),
            )),
            Some(value) => coerce(registry, ty, value, name).err(),
        };
        if let Some((why, field)) = problem {
            errors.push(bad_input(format!("variable `${name}` {why}"), &field));
        }
    }
    errors
}

/// Whether `value` coerces to `ty`; else why not, and the input field at fault.
fn coerce(registry: &Registry, ty: &Type, value: &Value, field: &str) -> Result<(), (String, String)> {
    let wrong = || Err((format!("is not a valid {ty}"), field.to_owned()));
    if *value == Value::Null {
        return if ty.nullable {
            Ok(())
        } else {
            Err((format!("must not be null ({ty})"), field.to_owned()))
        };
    }
    match &ty.base {
        BaseType::List(item) => match value {
            Value::List(items) => items.iter().try_for_each(|v| coerce(registry, item, v, field)),
            // Input coercion wraps a single value in a list.
            single => coerce(registry, item, single, field),
        },
        BaseType::Named(name) => match registry.types.get(name.as_str()) {
            Some(MetaType::Scalar { is_valid, .. }) => {
                let valid = match name.as_str() {
                    "Int" => {
                        matches!(value, Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()))
                    }
                    "Float" => matches!(value, Value::Number(_)),
                    "String" => matches!(value, Value::String(_)),
                    "Boolean" => matches!(value, Value::Boolean(_)),
                    "ID" => {
                        matches!(value, Value::String(_))
                            || matches!(value, Value::Number(n) if n.is_i64() || n.is_u64())
                    }
                    _ => is_valid.as_ref().is_none_or(|valid| valid(value)),
                };
                if valid { Ok(()) } else { wrong() }
            }
            Some(MetaType::Enum { enum_values, .. }) => match value {
                Value::String(s) if enum_values.contains_key(s.as_str()) => Ok(()),
                Value::Enum(e) if enum_values.contains_key(e.as_str()) => Ok(()),
                _ => wrong(),
            },
            Some(MetaType::InputObject { input_fields, .. }) => {
                let Value::Object(fields) = value else {
                    return wrong();
                };
                if let Some(unknown) = fields.keys().find(|k| !input_fields.contains_key(k.as_str())) {
                    return Err((format!("has no field `{unknown}` ({name})"), unknown.to_string()));
                }
                for (field_name, meta) in input_fields {
                    let Some(field_ty) = Type::new(&meta.ty) else {
                        continue;
                    };
                    match fields.get(field_name.as_str()) {
                        None if field_ty.nullable || meta.default_value.is_some() => {}
                        None => {
                            return Err((
                                format!("lacks the required field `{field_name}` ({name})"),
                                field_name.clone(),
                            ));
                        }
                        Some(v) => coerce(registry, &field_ty, v, field_name)?,
                    }
                }
                Ok(())
            }
            // Not an input type: validation has refused the document already.
            _ => Ok(()),
        },
    }
}

impl Coercion {
    /// Notes the operation `request` asks for.
    pub(super) fn prepared(&mut self, request: &Request) {
        self.operation_name.clone_from(&request.operation_name);
    }

    /// Checks the operation's selection and its variables against the parsed `doc`.
    pub(super) fn parsed(&mut self, registry: &Registry, doc: &ExecutableDocument, variables: &Variables) {
        let refused = match operation(doc, self.operation_name.as_deref()) {
            Ok(op) => check_variables(registry, op, variables),
            Err(err) => vec![err],
        };
        if !refused.is_empty() {
            self.refused = refused;
        }
    }

    /// Validation's verdict, unless the request itself was refused.
    pub(super) fn validated(
        &mut self,
        result: Result<ValidationResult, Vec<ServerError>>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        // async-graphql's validation also looks at variables, and reports a mistyped one
        // as the document's fault: when the variables are wrong, say that instead.
        let refused = std::mem::take(&mut self.refused);
        if refused.is_empty() { result } else { Err(refused) }
    }
}
