# Type stub for py-serializable 2.2.0 (the serialisation layer of cyclonedx-python-lib), read by pyright from
# `typings/` (its default stubPath); nothing here runs.
#
# Why: the package annotates `serializable_class` as returning `Intersection[type[T], type[_JsonSerializable],
# type[_XmlSerializable]]`, but spells `Intersection` as `typing.Union` (Python has no intersection type). Every
# CycloneDX model class (`Component`, `Vulnerability`, `Property`, ...) then has the type of a *union* of three
# classes, so pyright rejects each constructor call and attribute of them. Here the decorators hand back the class
# they decorate. Names not declared below fall back to `Any` (`__getattr__`), the convention of incomplete stubs.

from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, Literal, TypeVar, overload

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)

__version__: str

def __getattr__(name: str) -> Any: ...

class ViewType: ...

class SerializationType(str, Enum):  # noqa: UP042 (as the library declares it)
    JSON = "JSON"
    XML = "XML"

class XmlArraySerializationType(Enum):
    FLAT = 1
    NESTED = 2

class XmlStringSerializationType(Enum):
    STRING = 1
    NORMALIZED_STRING = 2
    TOKEN = 3

class ObjectMetadataLibrary:
    def __getattr__(self, name: str) -> Any: ...

@overload
def serializable_enum(cls: Literal[None] = None) -> Callable[[type[_E]], type[_E]]: ...
@overload
def serializable_enum(cls: type[_E]) -> type[_E]: ...
@overload
def serializable_class(
    cls: Literal[None] = None,
    *,
    name: str | None = None,
    serialization_types: Iterable[SerializationType] | None = None,
    ignore_during_deserialization: Iterable[str] | None = None,
    ignore_unknown_during_deserialization: bool = False,
) -> Callable[[type[_T]], type[_T]]: ...
@overload
def serializable_class(
    cls: type[_T],
    *,
    name: str | None = None,
    serialization_types: Iterable[SerializationType] | None = None,
    ignore_during_deserialization: Iterable[str] | None = None,
    ignore_unknown_during_deserialization: bool = False,
) -> type[_T]: ...
def type_mapping(type_: type) -> Callable[[_F], _F]: ...
def include_none(view_: type[ViewType] | None = None, none_value: Any | None = None) -> Callable[[_F], _F]: ...
def json_name(name: str) -> Callable[[_F], _F]: ...
def string_format(format_: str) -> Callable[[_F], _F]: ...
def view(view_: type[ViewType]) -> Callable[[_F], _F]: ...
def xml_attribute() -> Callable[[_F], _F]: ...
def xml_array(array_type: XmlArraySerializationType, child_name: str) -> Callable[[_F], _F]: ...
def xml_string(string_type: XmlStringSerializationType) -> Callable[[_F], _F]: ...
def xml_name(name: str) -> Callable[[_F], _F]: ...
def xml_sequence(sequence: int) -> Callable[[_F], _F]: ...
